"""The kernel's daxdev table: a small, self-contained, dense array of slots keyed by daxdev index.

Modelled on `struct famfs_dax_devlist` in fs/fuse/famfs.c (docs/famfs-format.md section 4): one table per FUSE
connection, `nslots` slots (24 in the V-series patches, 64 in the newest trees), each slot holding
`valid`, `error`, `dax_err`, the device number, the device and its name. Lookup by index is O(1).

Publishing a slot is explicit steps, so the race work can interleave them with readers and with
the memory system (`harness.faults`): store devno, device and name; `wmb()`; store valid=1.
A reader loads `valid` first and then the fields. Every store and load goes through a memory
object with `store(loc, value)`, `load(loc, default)`, `barrier()` and `release()`: by default `DirectMemory`
(stores visible at once, as on one CPU); the fault work passes a weak-memory model in which
stores not ordered by a barrier may become visible to other CPUs in any order. With the barrier,
a reader that sees valid=1 sees every field (TBL-PUBLISH) on every schedule.

`barrier`, `valid_first` and `locking` are fault-injection switches (the race plans turn them;
the daemon never does): without the barrier, or with valid stored first, a reader can see a valid
slot whose fields are not there yet; without the lock, teardown can detach a slot between a
reader's valid check and its field loads.

The table lives per mount and knows nothing of UUIDs: userspace resolved them (section 5.3).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Generator, Hashable

FIELDS = ("devno", "device", "name")


class DirectMemory:
    """Memory where every store is visible at once (one CPU, or a strong model)."""

    __slots__ = ("cells",)

    def __init__(self) -> None:
        self.cells: dict[Hashable, Any] = {}

    def store(self, loc: Hashable, value: Any) -> None:
        self.cells[loc] = value

    def load(self, loc: Hashable, default: Any = None) -> Any:
        return self.cells.get(loc, default)

    def barrier(self) -> None:
        pass

    def release(self) -> None:
        """Unlock with release semantics: every store before it is visible to the next locker."""


@dataclass(frozen=True, slots=True)
class SlotView:
    """What one reader saw of a slot: the flags, then the fields, read in that order."""

    index: int
    valid: bool
    error: bool
    dax_err: bool
    devno: int
    device: Any
    name: str | None

    @property
    def complete(self) -> bool:
        return self.device is not None and self.devno != 0


class DaxdevTable:
    """Dense zero-based array of `nslots` slots, stored in `memory` at (index, field)."""

    def __init__(self, nslots: int, memory: Any = None, *, barrier: bool = True, valid_first: bool = False,
                 locking: bool = True):
        self.nslots = nslots
        self.mem = memory if memory is not None else DirectMemory()
        self.use_barrier = barrier
        self.valid_first = valid_first
        self.locking = locking              # famfs_devlist_sem: readers shared, teardown exclusive
        self.readers = 0
        self.writer = False
        self.barriers = 0
        self.ndevs = 0

    # -- the publisher ------------------------------------------------------------------------

    def install_steps(self, index: int, devno: int, device: Any, name: str | None) -> Generator[str, None, int]:
        """Publish slot `index` one store at a time (yielding after each). Returns 0 if installed
        or already valid, -errno if the index is out of range or an earlier attempt failed for
        good (dax_err)."""
        if not 0 <= index < self.nslots:
            return -errno.EINVAL
        mem = self.mem
        if mem.load((index, "valid"), False):
            return 0
        if mem.load((index, "dax_err"), False):
            return -errno.EIO
        if self.valid_first:
            mem.store((index, "valid"), True)
            yield f"store slot {index} valid (first: fault)"
        for f, v in zip(FIELDS, (devno, device, name), strict=True):
            mem.store((index, f), v)
            yield f"store slot {index} {f}"
        if self.use_barrier:
            mem.barrier()
            self.barriers += 1
            yield "wmb"
        if not self.valid_first:
            mem.store((index, "valid"), True)
            yield f"store slot {index} valid"
        self.ndevs += 1
        return 0

    def install(self, index: int, devno: int, device: Any, name: str | None) -> int:
        """Publish slot `index` in one go (fill, barrier, valid)."""
        return _finish(self.install_steps(index, devno, device, name))

    def fill(self, index: int, devno: int, device: Any, name: str | None) -> None:
        for f, v in zip(FIELDS, (devno, device, name), strict=True):
            self.mem.store((index, f), v)

    def barrier(self) -> None:
        self.mem.barrier()
        self.barriers += 1

    def set_valid(self, index: int) -> None:
        self.mem.store((index, "valid"), True)
        self.ndevs += 1

    def mark_dax_err(self, index: int) -> None:
        """The device could not be taken: cache the failure (the kernel keeps it, no retry)."""
        if 0 <= index < self.nslots:
            self.mem.store((index, "dax_err"), True)

    # -- readers ------------------------------------------------------------------------------

    def read_steps(self, index: int) -> Generator[str, None, SlotView | None]:
        """Read slot `index` as a reader CPU does, one load at a time: flags, then fields, all
        under the read side of the table's lock."""
        if not 0 <= index < self.nslots:
            return None
        while self.locking and self.writer:
            yield "wait for read lock"
        self.readers += 1
        try:
            mem = self.mem
            valid = mem.load((index, "valid"), False)
            yield f"load slot {index} valid={int(bool(valid))}"
            error, dax_err = mem.load((index, "error"), False), mem.load((index, "dax_err"), False)
            devno = mem.load((index, "devno"), 0)
            yield f"load slot {index} devno"
            device = mem.load((index, "device"))
            name = mem.load((index, "name"))
            yield f"load slot {index} device, name"
        finally:
            self.readers -= 1
        return SlotView(index, bool(valid), bool(error), bool(dax_err), devno, device, name)

    def read_slot(self, index: int) -> SlotView | None:
        """Read slot `index` (flags first, then fields). None if out of range."""
        if not 0 <= index < self.nslots:
            return None
        mem = self.mem
        return SlotView(index, bool(mem.load((index, "valid"), False)), bool(mem.load((index, "error"), False)),
                        bool(mem.load((index, "dax_err"), False)), mem.load((index, "devno"), 0),
                        mem.load((index, "device")), mem.load((index, "name")))

    def valid_indices(self) -> list[int]:
        return [i for i in range(self.nslots) if self.mem.load((i, "valid"), False)]

    def clear_steps(self) -> Generator[str, None, None]:
        """Teardown under the write side of the lock: invalidate, then detach every slot."""
        while self.locking and (self.writer or self.readers):
            yield "wait for write lock"
        self.writer = True
        try:
            for i in range(self.nslots):
                if self.mem.load((i, "valid"), False) or self.mem.load((i, "device")) is not None:
                    for f in ("valid", "error", "dax_err", *FIELDS):
                        self.mem.store((i, f), None if f in ("device", "name") else (0 if f == "devno" else False))
                        yield f"teardown slot {i} {f}"
            self.ndevs = 0
        finally:
            self.mem.release()                  # up_write(): the teardown's stores precede the unlock
            self.writer = False

    def clear(self) -> None:
        """Teardown: detach every slot."""
        _finish(self.clear_steps())


def _finish(steps: Generator[str, None, Any]) -> Any:
    """Run a step generator to its end and return its value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
