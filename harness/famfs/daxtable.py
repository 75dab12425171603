"""The kernel's daxdev table: a small, self-contained, dense array of slots keyed by daxdev index.

Modelled on `struct famfs_dax_devlist` in fs/fuse/famfs.c (famfs-spec.md 3.5): one table per FUSE
connection, `nslots` slots (24 in the V-series patches, 64 in the newest trees), each slot holding
`valid`, `error`, `dax_err`, the device number, the device and its name. Lookup by index is O(1).

Publishing a slot is three explicit steps, so the race and fault work can interleave and reorder
them (`harness.faults`): `fill()` writes devno/device/name, `barrier()` is the kernel's `wmb()`,
`set_valid()` sets the flag readers test first. `install()` runs them in the correct order.
A reader (`read_slot`) checks `valid` first and then reads the fields; with a correct publisher it
can never see a valid slot with missing fields (TBL-PUBLISH). `SlotView` is what a reader saw.

The table lives per mount and knows nothing of UUIDs: userspace resolved them (section 5.3).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any


class Slot:
    """One mutable table slot (the kernel's `struct famfs_daxdev`)."""

    __slots__ = ("valid", "error", "dax_err", "devno", "device", "name")

    def __init__(self) -> None:
        self.valid = False
        self.error = False          # memory failure reported for this device
        self.dax_err = False        # the device could not be taken (holder failure): never retried
        self.devno = 0
        self.device: Any = None
        self.name: str | None = None


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
    """Dense zero-based array of `nslots` slots; the installer's steps are public for fault work."""

    def __init__(self, nslots: int):
        self.nslots = nslots
        self.slots = [Slot() for _ in range(nslots)]
        self.ndevs = 0
        self.barriers = 0

    # -- the publisher's three steps ----------------------------------------------------------

    def fill(self, index: int, devno: int, device: Any, name: str | None) -> None:
        s = self.slots[index]
        s.devno, s.device, s.name = devno, device, name

    def barrier(self) -> None:
        """`wmb()`: in this single-address-space model it only counts; the store-buffer model of
        the race work decides what another CPU may see without it."""
        self.barriers += 1

    def set_valid(self, index: int) -> None:
        self.slots[index].valid = True
        self.ndevs += 1

    def install(self, index: int, devno: int, device: Any, name: str | None) -> int:
        """Publish slot `index` (fill, barrier, valid). 0 if installed or already valid, -errno
        if the index is out of range or an earlier attempt failed for good (dax_err)."""
        if not 0 <= index < self.nslots:
            return -errno.EINVAL
        s = self.slots[index]
        if s.valid:
            return 0
        if s.dax_err:
            return -errno.EIO
        self.fill(index, devno, device, name)
        self.barrier()
        self.set_valid(index)
        return 0

    def mark_dax_err(self, index: int) -> None:
        """The device could not be taken: cache the failure (the kernel sets valid with dax_err)."""
        if 0 <= index < self.nslots:
            self.slots[index].dax_err = True

    # -- readers ------------------------------------------------------------------------------

    def read_slot(self, index: int) -> SlotView | None:
        """Read slot `index` as a reader CPU does: flags first, then fields. None if out of range."""
        if not 0 <= index < self.nslots:
            return None
        s = self.slots[index]
        valid, error, dax_err = s.valid, s.error, s.dax_err
        return SlotView(index, valid, error, dax_err, s.devno, s.device, s.name)

    def valid_indices(self) -> list[int]:
        return [i for i, s in enumerate(self.slots) if s.valid]

    def clear(self) -> None:
        """Teardown: detach every slot."""
        self.slots = [Slot() for _ in range(self.nslots)]
        self.ndevs = 0
