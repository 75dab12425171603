"""The userspace daxdev index table: index -> (UUID, size), built from the superblock and the log.

This is the contract famfs-fuzz exists to check (docs/famfs-format.md section 5):

* A daxdev's identity is its UUID; its local name and dev_t differ per node, its UUID does not.
* The **index** is owned by userspace. Index 0 is the primary, the daxdev whose superblock holds
  the log; it is known at mount, before any log entry is read (IDX-PRIMARY), because a file on
  index 0 (the log itself) must resolve first.
* Each ADD_DAXDEV log entry defines the *next* index, in log order: it is accepted only if its
  index equals the number of devices defined so far (IDX-DENSE, ERANGE), the table has a free slot
  (IDX-DENSE, ENOSPC at `MAX_DAXDEVS`), and its UUID is not in the table yet, the primary's
  included (IDX-UUID-UNIQUE, EEXIST). An entry claiming index 0 is refused as IDX-PRIMARY. On
  refusal the table is unchanged (as `famfs_daxdev_table_add` does).
* An fmap may reference only indices defined earlier in the log (IDX-DEFINED-BEFORE-USE); replay
  asks `defined(i)` at the moment it meets the file.
* Because every node replays the same log, index i denotes the same UUID on every node
  (IDX-CLUSTER); node-local things (names, dev_t, the kernel's slots) hang off the UUID elsewhere.

The kernel's own table (valid flag published after a write barrier, lazy discovery when an fmap
first references an index) lives in `kernel.py`; this table is what the daemon answers it from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from harness.famfs.errors import EntryRejected
from harness.famfs.ids import DaxIndex, Uuid, uuid_str
from harness.famfs.layout import MAX_DAXDEVS, AddDaxdev


@dataclass(frozen=True, slots=True)
class Daxdev:
    """One defined daxdev: its index, 16-byte UUID, size, and the entry that defined it (None: primary)."""

    index: DaxIndex
    uuid: Uuid
    size: int
    entry: int | None

    @property
    def uuid_text(self) -> str:
        return uuid_str(self.uuid)

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "uuid": self.uuid_text, "size": self.size, "entry": self.entry}


class IndexTable:
    """Dense, zero-based daxdev table: slot i is the device the log defined as index i."""

    __slots__ = ("_devs", "_by_uuid", "slots")

    def __init__(self, primary_uuid: Uuid, primary_size: int, slots: int = MAX_DAXDEVS):
        self.slots = slots
        first = Daxdev(DaxIndex(0), Uuid(bytes(primary_uuid)), primary_size, None)
        self._devs: list[Daxdev] = [first]
        self._by_uuid: dict[Uuid, DaxIndex] = {first.uuid: DaxIndex(0)}

    def add(self, entry: int, add: AddDaxdev) -> Daxdev:
        """Apply one ADD_DAXDEV entry, or raise the typed rejection (the table is then unchanged)."""
        n = len(self._devs)
        if add.index == 0:
            return self._refuse(EntryRejected.claims_primary(
                entry, f"ADD_DAXDEV claims index 0, which is the primary {self._devs[0].uuid_text}"))
        if n >= self.slots:
            return self._refuse(EntryRejected.table_full(entry, self.slots))
        if add.index != n:
            return self._refuse(EntryRejected.not_dense(entry, add.index, n))
        prior = self._by_uuid.get(add.uuid)
        if prior is not None:
            return self._refuse(EntryRejected.duplicate_uuid(entry, uuid_str(add.uuid), prior))
        dev = Daxdev(DaxIndex(n), add.uuid, add.size, entry)
        self._devs.append(dev)
        self._by_uuid[add.uuid] = dev.index
        return dev

    @staticmethod
    def _refuse(error: EntryRejected) -> Daxdev:
        raise error

    def defined(self, index: int) -> bool:
        return 0 <= index < len(self._devs)

    def __getitem__(self, index: int) -> Daxdev:
        return self._devs[index]

    def __len__(self) -> int:
        return len(self._devs)

    def __iter__(self) -> Iterator[Daxdev]:
        return iter(self._devs)

    def index_of(self, uuid: Uuid) -> DaxIndex | None:
        return self._by_uuid.get(uuid)

    def sizes(self) -> list[int]:
        return [d.size for d in self._devs]

    def as_list(self) -> list[dict[str, object]]:
        return [d.as_dict() for d in self._devs]
