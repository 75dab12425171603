"""Typed rejections: the one exception tree that famfs raises for bad input, errno + invariant.

A `FamfsError` is correct behaviour of the system under test: famfs looked at bytes and refused
them, as upstream famfs does with an errno. Anything else escaping `harness/famfs` is a bug (and,
under the fuzzer, a crash). Rejections are values: replay collects them for entries it skips.
"""
from __future__ import annotations

import errno as _errno

from harness.famfs.invariants import Invariant


class FamfsError(Exception):
    """Raised (or recorded) when famfs refuses input; carries errno, invariant ID and entry number."""

    def __init__(self, err: int, invariant: Invariant, message: str, entry: int | None = None):
        super().__init__(message)
        self.errno = err
        self.invariant = invariant
        self.message = message
        self.entry = entry

    def __str__(self) -> str:
        where = f" (entry {self.entry})" if self.entry is not None else ""
        return f"{self.invariant}: {self.message}{where} [{_errno.errorcode.get(self.errno, self.errno)}]"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.errno!r}, {self.invariant.value!r}, {self.message!r}, "
                f"entry={self.entry!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FamfsError) and type(self) is type(other) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((type(self), self.errno, self.invariant, self.message, self.entry))

    def as_dict(self) -> dict[str, object]:
        return {"entry": self.entry, "id": self.invariant.value,
                "errno": _errno.errorcode.get(self.errno, str(self.errno)), "message": self.message}


class SuperblockRejected(FamfsError):
    """Raised when a device's superblock is unusable (SB-VALID) or is not a usable primary (IDX-PRIMARY)."""

    @classmethod
    def bad(cls, message: str) -> "SuperblockRejected":
        return cls(_errno.EINVAL, Invariant.SB_VALID, message)

    @classmethod
    def not_primary(cls, message: str) -> "SuperblockRejected":
        return cls(_errno.ENODEV, Invariant.IDX_PRIMARY, message)


class LogHeaderRejected(FamfsError):
    """Raised when the log header is unusable (LOG-HEADER): the image cannot be replayed at all."""

    @classmethod
    def bad(cls, message: str) -> "LogHeaderRejected":
        return cls(_errno.EINVAL, Invariant.LOG_HEADER, message)


class EntryRejected(FamfsError):
    """Recorded by replay for one log entry it refuses; replay goes on (or stops, for LOG-PREFIX)."""

    @classmethod
    def torn(cls, entry: int, message: str) -> "EntryRejected":
        return cls(_errno.EIO, Invariant.LOG_PREFIX, message, entry)

    @classmethod
    def bad_type(cls, entry: int, etype: int) -> "EntryRejected":
        return cls(_errno.EINVAL, Invariant.ENTRY_TYPE, f"entry type {etype} is not replayable", entry)

    @classmethod
    def bad_fmap(cls, entry: int, message: str) -> "EntryRejected":
        return cls(_errno.EINVAL, Invariant.FMAP_SHAPE, message, entry)

    @classmethod
    def out_of_bounds(cls, entry: int, message: str) -> "EntryRejected":
        return cls(_errno.ERANGE, Invariant.EXT_BOUNDS, message, entry)

    @classmethod
    def escapes(cls, entry: int, message: str) -> "EntryRejected":
        return cls(_errno.EINVAL, Invariant.NS_CONTAINED, message, entry)

    @classmethod
    def conflict(cls, entry: int, message: str, err: int = _errno.EEXIST) -> "EntryRejected":
        return cls(err, Invariant.NS_CONFLICT, message, entry)

    @classmethod
    def claims_primary(cls, entry: int, message: str) -> "EntryRejected":
        return cls(_errno.EINVAL, Invariant.IDX_PRIMARY, message, entry)

    @classmethod
    def not_dense(cls, entry: int, index: int, expected: int) -> "EntryRejected":
        return cls(_errno.ERANGE, Invariant.IDX_DENSE,
                   f"ADD_DAXDEV index {index}, next dense index is {expected}", entry)

    @classmethod
    def table_full(cls, entry: int, slots: int) -> "EntryRejected":
        return cls(_errno.ENOSPC, Invariant.IDX_DENSE, f"daxdev table full ({slots} slots)", entry)

    @classmethod
    def duplicate_uuid(cls, entry: int, uuid: str, index: int) -> "EntryRejected":
        return cls(_errno.EEXIST, Invariant.IDX_UUID_UNIQUE,
                   f"daxdev {uuid} already has index {index}", entry)

    @classmethod
    def undefined_index(cls, entry: int, index: int, ndevs: int) -> "EntryRejected":
        return cls(_errno.ENODEV, Invariant.IDX_DEFINED_BEFORE_USE,
                   f"extent references daxdev index {index}, only 0..{ndevs - 1} defined so far", entry)


class FsckFinding(FamfsError):
    """Recorded by fsck for a cross-file problem (EXT-OVERLAP, EXT-BOUNDS per device)."""

    daxdev: int | None = None                    # the daxdev index the finding is about

    @classmethod
    def collision(cls, entry: int, message: str, daxdev: int | None = None) -> "FsckFinding":
        finding = cls(_errno.EEXIST, Invariant.EXT_OVERLAP, message, entry)
        finding.daxdev = daxdev
        return finding

    @classmethod
    def beyond_device(cls, entry: int, message: str, daxdev: int) -> "FsckFinding":
        finding = cls(_errno.ERANGE, Invariant.EXT_BOUNDS, message, entry)
        finding.daxdev = daxdev
        return finding


class DeviceError(FamfsError):
    """Raised when a DAX device cannot be opened, resolved or accessed (IDX-RESOLVE, EXT-BOUNDS, EIO)."""


class ImageError(FamfsError):
    """Raised by the image builder when asked for something famfs would refuse (ENOSPC, bad spec)."""

    @classmethod
    def log_full(cls, slots: int) -> "ImageError":
        return cls(_errno.ENOSPC, Invariant.LOG_HEADER, f"log full ({slots} entries)")

    @classmethod
    def no_space(cls, message: str) -> "ImageError":
        return cls(_errno.ENOSPC, Invariant.EXT_BOUNDS, message)
