"""Making famfs images: mkfs of primary and secondary daxdevs, the master's log appender, the allocator.

`Image` is the master node's view of a file system being built: it owns the device buffers (any
writable buffer: bytearray, mmap of an emulated DAX file, a real devdax mapping), appends log
entries exactly as famfs's `famfs_append_log` does (entry bytes with seqnum == slot and CRC first,
then next_index/next_seqnum), allocates in alloc units across devices, and records what it wrote
(`expected`) so tests can compare replay against the builder.

Secondaries carry a superblock of their own (device UUID, flag SECONDARY, log offset/len 0): the
per-node resolver identifies devices by it. famfs 5d0919f does not write secondaries yet (Phase 5
of its roadmap); this follows the roadmap's Phase 2 shape without the planned new field.
"""
from __future__ import annotations

import os
import random
import uuid as _uuid
from dataclasses import dataclass, replace
from typing import Sequence, Union

from harness.famfs.errors import ImageError
from harness.famfs.fmap import segments
from harness.famfs.ids import DaxIndex, Uuid
from harness.famfs.index import Daxdev
from harness.famfs.layout import (
    ALLOC_UNIT, ENTRY_SIZE, HEADER_SIZE, LOG_ENTRY, LOG_HEADER, LOG_LEN, LOG_OFFSET, MAX_DAXDEVS, SECONDARY_SB,
    SUPERBLOCK_SIZE, AddDaxdev, EntryType, FileMeta, InterleavedFmap, LogEntry, LogHeader, Mkdir,
    Payload, SimpleExtent, SimpleFmap, Superblock, log_slots,
)
from harness.famfs.namespace import Dir, File, Namespace
from harness.famfs.shm import Port, port_of

Buffer = Union[bytearray, memoryview]
FM_ALL_HOSTS_RW = 2


def new_uuid() -> Uuid:
    return Uuid(_uuid.uuid4().bytes)


def mkfs(device: Buffer, size: int, *, dev_uuid: Uuid, fs_uuid: Uuid, system_uuid: Uuid,
         log_len: int = LOG_LEN, log_offset: int = LOG_OFFSET, alloc_unit: int = ALLOC_UNIT,
         daxdev_name: bytes = b"/dev/dax0.0", head_is_zero: bool = False, port: Port | None = None) -> Superblock:
    """Format a primary daxdev as `__famfs_mkfs` does: superblock, zeroed log, fresh log header.
    `head_is_zero`: the caller knows the superblock region is zero already (a fresh buffer, or a
    pool's canonical one), so only the superblock itself is written there.

    Order (through `port`, docs/famfs-format.md "Flushes and fences"): the old superblock region
    is zeroed, flushed and fenced first, so no other node can pair an old superblock with the new
    log; then the zeroed log and its header, flushed and fenced; the new superblock last."""
    if log_offset + log_len > min(size, len(device)):
        raise ImageError.no_space(f"log [{log_offset:#x}, +{log_len:#x}) does not fit a {size:#x}-byte device")
    sb = Superblock(log_offset=log_offset, log_len=log_len, alloc_unit=alloc_unit, fs_uuid=fs_uuid,
                    dev_uuid=dev_uuid, system_uuid=system_uuid, dd_size=size,
                    dd_daxdev=daxdev_name).sealed()
    mem = port_of(device, port)
    if not head_is_zero:
        head = min(SUPERBLOCK_SIZE, log_offset)
        mem.store(0, bytes(head))
        mem.flush(0, head)
        mem.fence()
    mem.store(log_offset, bytes(log_len))
    mem.store(log_offset, LogHeader.for_log(log_len).encode())
    mem.flush(log_offset, log_len)
    mem.fence()
    raw = sb.encode()
    mem.store(0, raw)
    mem.flush(0, len(raw))
    mem.fence()
    return sb


def mkfs_secondary(device: Buffer, size: int, *, dev_uuid: Uuid, fs_uuid: Uuid,
                   system_uuid: Uuid, daxdev_name: bytes = b"", port: Port | None = None) -> Superblock:
    """Format a secondary daxdev: a superblock naming its own UUID, flag SECONDARY, no log;
    flushed and fenced before the ADD_DAXDEV that names it can be appended."""
    sb = Superblock(log_offset=0, log_len=0, fs_uuid=fs_uuid, dev_uuid=dev_uuid,
                    system_uuid=system_uuid, flags=SECONDARY_SB, dd_size=size,
                    dd_daxdev=daxdev_name).sealed()
    mem = port_of(device, port)
    raw = sb.encode()
    mem.store(0, raw)
    mem.flush(0, len(raw))
    mem.fence()
    return sb


class LogWriter:
    """The master's appender on a primary's log region (`famfs_append_log`).

    An append is a program of stores: the entry (in `ENTRY_CHUNKS` pieces, as a memcpy of 544
    bytes is not one atomic store), a write barrier, then next_seqnum and next_index together. `stores()`
    returns that program so the fault work can make the stores visible to a concurrent reader in
    any order the memory model allows; `append()` performs it through `port` with famfs's
    flushes and fences (entry stored, flushed, fenced; counters stored, flushed, fenced).
    `counter_first` is a fault-injection switch (never set by famfs): counters before the entry,
    no barrier between.
    """

    ENTRY_CHUNKS = 4

    def __init__(self, device: Buffer, sb: Superblock, *, counter_first: bool = False, port: Port | None = None):
        self.device = device
        self.port = port_of(device, port)
        self.base = sb.log_offset
        self.slots = log_slots(sb.log_len)
        header = LogHeader.decode(device, self.base)
        self.next_index = header.next_index
        self.counter_first = counter_first

    def stores(self, etype: int, payload: Payload) -> list[tuple[int, bytes] | None]:
        """The next append as (device offset, bytes) stores in program order; None is a barrier."""
        i = self.next_index
        if i >= self.slots:
            raise ImageError.log_full(self.slots)
        at = self.base + HEADER_SIZE + ENTRY_SIZE * i
        entry = _sealed_entry(i, etype, payload)
        step = ENTRY_SIZE // self.ENTRY_CHUNKS
        chunks: list[tuple[int, bytes] | None] = [(at + k, entry[k:k + step]) for k in range(0, ENTRY_SIZE, step)]
        seq_at = self.base + LOG_HEADER.offsets["next_seqnum"]
        # One 16-byte store for both counters: as two stores (famfs increments them one after the
        # other) a concurrent reader can see next_seqnum != next_index and must refuse the header
        # (LOG-HEADER). log_tail_race found this; see README "Findings".
        counters: list[tuple[int, bytes] | None] = [(seq_at, _U64_PAIR.pack(i + 1, i + 1))]
        return counters + chunks if self.counter_first else chunks + [None] + counters

    def append(self, etype: int, payload: Payload) -> int:
        """Write one entry into the next slot, then advance next_index/next_seqnum; its slot number.
        The same stores as `stores()` in its order, written as two (nothing runs in between)."""
        if self.counter_first:
            for store in self.stores(etype, payload):
                if store is not None:
                    off, data = store
                    self.device[off:off + len(data)] = data
        else:
            i = self.next_index
            if i >= self.slots:
                raise ImageError.log_full(self.slots)
            at = self.base + HEADER_SIZE + ENTRY_SIZE * i
            port = self.port
            port.store(at, _sealed_entry(i, etype, payload))
            port.flush(at, ENTRY_SIZE)
            port.fence()                              # the entry is in shared memory before...
            seq_at = self.base + _NEXT_SEQNUM
            port.store(seq_at, _U64_PAIR.pack(i + 1, i + 1))
            port.flush(seq_at, 16)                    # ...the counters that publish it
            port.fence()
        self.next_index += 1
        return self.next_index - 1


_NEXT_SEQNUM = LOG_HEADER.offsets["next_seqnum"]
_U64_PAIR = LOG_HEADER.part("next_seqnum", "next_index")
assert LOG_HEADER.offsets["next_index"] == _NEXT_SEQNUM + 8


def _sealed_entry(seqnum: int, etype: int, payload: Payload) -> bytes:
    """`LogEntry(seqnum, etype, payload).sealed().encode()`, encoding once: the CRC over its
    documented range, stored in its field."""
    raw = bytearray(LogEntry(seqnum, etype, payload).encode())
    LOG_ENTRY.seal(raw)
    return bytes(raw)


class Allocator:
    """First-fit allocation in alloc units, one free list per daxdev index; never frees (famfs).

    Free space is a sorted list of [start, end) byte runs, so a device of any size (ADD_DAXDEV
    carries a u64) costs a few integers, not a bitmap."""

    def __init__(self, alloc_unit: int):
        self.au = alloc_unit
        self.free: list[list[tuple[int, int]]] = []

    def add_device(self, size: int, reserved: int) -> None:
        first = -(-reserved // self.au) * self.au
        end = size // self.au * self.au
        self.free.append([(first, end)] if first < end else [])

    def alloc(self, nbytes: int, devindex: int) -> SimpleExtent:
        """A contiguous run of at least `nbytes` (rounded up to the unit) on `devindex`."""
        n = max(1, -(-nbytes // self.au)) * self.au
        runs = self.free[devindex]
        for k, (lo, hi) in enumerate(runs):
            if hi - lo >= n:
                runs[k:k + 1] = [(lo + n, hi)] if lo + n < hi else []
                return SimpleExtent(devindex, lo, n)
        raise ImageError.no_space(f"no {n // self.au} free contiguous units on daxdev {devindex}")

    def free_bytes(self, devindex: int) -> int:
        return sum(hi - lo for lo, hi in self.free[devindex])


@dataclass(frozen=True, slots=True)
class Interleave:
    """How to stripe a new file: `nstrips` strips of `chunk_size` chunks on `devindices` round-robin."""

    nstrips: int
    chunk_size: int = ALLOC_UNIT
    devindices: tuple[int, ...] = (0,)


class Image:
    """A famfs under construction on the master: devices[0] is the primary, formatted by `mkfs`."""

    def __init__(self, devices: Sequence[Buffer], sizes: Sequence[int], sb: Superblock, port: Port | None = None):
        self.devices = list(devices)
        self.sizes = list(sizes)
        self.sb = sb
        self.log = LogWriter(self.devices[0], sb, port=port)
        self.alloc = Allocator(sb.alloc_unit)
        self.alloc.add_device(sizes[0], sb.log_offset + sb.log_len)
        self.table: list[Daxdev] = [Daxdev(DaxIndex(0), sb.dev_uuid, sizes[0], None)]
        self.expected = Namespace()

    @classmethod
    def mkfs(cls, devices: Sequence[Buffer], sizes: Sequence[int] | None = None, *,
               uuids: Sequence[Uuid] | None = None, fs_uuid: Uuid | None = None,
               system_uuid: Uuid | None = None, log_len: int = LOG_LEN,
               alloc_unit: int = ALLOC_UNIT, add_secondaries: bool = True,
               head_is_zero: bool = False, port: Port | None = None) -> "Image":
        """mkfs the primary (devices[0]) and every secondary; ADD_DAXDEV each secondary in order.
        `head_is_zero`: as in `mkfs`, for the primary. `port`: what the primary's metadata is
        written through (default: straight into devices[0])."""
        sizes = list(sizes) if sizes is not None else [len(d) for d in devices]
        uuids = list(uuids) if uuids is not None else [new_uuid() for _ in devices]
        fs_uuid = fs_uuid or new_uuid()
        system_uuid = system_uuid or new_uuid()
        sb = mkfs(devices[0], sizes[0], dev_uuid=uuids[0], fs_uuid=fs_uuid, system_uuid=system_uuid,
                  log_len=log_len, alloc_unit=alloc_unit, head_is_zero=head_is_zero, port=port)
        for dev, size, u in zip(devices[1:], sizes[1:], uuids[1:], strict=True):
            mkfs_secondary(dev, size, dev_uuid=u, fs_uuid=fs_uuid, system_uuid=system_uuid)
        image = cls(devices[:1], sizes[:1], sb, port=port)
        if add_secondaries:
            for dev, size, u in zip(devices[1:], sizes[1:], uuids[1:], strict=True):
                image.attach(dev, size, u)
        return image

    def rebind(self, devices: Sequence[Buffer]) -> None:
        """Go on as master on other buffers holding the same bytes (e.g. the shared mappings the
        image was copied into), so later appends land where the other nodes see them."""
        self.devices = list(devices)
        self.log.device = self.devices[0]
        self.log.port = port_of(self.devices[0], None)

    # -- the master's operations --------------------------------------------------------------

    def attach(self, device: Buffer, size: int, dev_uuid: Uuid) -> int:
        """Make `device` the next daxdev: ADD_DAXDEV (the log defines its index), then allocate on it."""
        if len(self.table) >= MAX_DAXDEVS:
            raise ImageError.no_space(f"daxdev table full ({MAX_DAXDEVS})")
        index = self.add_daxdev(dev_uuid, size)
        self.devices.append(device)
        self.sizes.append(size)
        return index

    def add_daxdev(self, dev_uuid: Uuid, size: int, index: int | None = None) -> int:
        """Append ADD_DAXDEV. `index` defaults to the next dense one; any other value writes a bad
        entry on purpose (and defines nothing in `table`/`expected`)."""
        dense = len(self.table)
        index = dense if index is None else index
        self.log.append(EntryType.ADD_DAXDEV, AddDaxdev(size, dev_uuid, index))
        if index == dense:
            self.table.append(Daxdev(DaxIndex(index), dev_uuid, size, self.log.next_index - 1))
            self.alloc.add_device(size, SUPERBLOCK_SIZE)
        return index

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> int:
        i = self.log.append(EntryType.MKDIR, Mkdir(uid, gid, mode, path.encode()))
        self.expected.add_dir(Dir(path, mode, uid, gid, i))
        return i

    def create(self, path: str, size: int, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
               devindex: int = 0, interleave: Interleave | None = None,
               data: bytes | None = None) -> File:
        """Allocate, append the FILE entry (famfs's commit point), then write `data` (default: a
        pattern derived from the path) through the fmap onto the devices."""
        if interleave is None:
            fmap: Union[SimpleFmap, InterleavedFmap] = SimpleFmap.of([self.alloc.alloc(size, devindex)])
        else:
            chunk, n = interleave.chunk_size, interleave.nstrips
            chunks = -(-size // chunk)                         # ceil(size / chunk), then per strip
            per_strip = max(1, -(-chunks // n)) * chunk
            devs = interleave.devindices
            fmap = InterleavedFmap.of(chunk, [self.alloc.alloc(per_strip, devs[k % len(devs)]) for k in range(n)])
        i = self.log.append(EntryType.FILE,
                            FileMeta(size, FM_ALL_HOSTS_RW, uid, gid, mode, path.encode(), fmap))
        f = File(path, size, FM_ALL_HOSTS_RW, mode, uid, gid, fmap, i)
        self.expected.add_file(f)
        self.write(f, pattern(path, size) if data is None else data)
        return f

    def write(self, f: File, data: bytes) -> None:
        """Store `data` at file offset 0 of `f` through its fmap."""
        view = memoryview(data)
        for off, index, dev_off, run in segments(f.fmap, min(len(data), f.size)):
            self.devices[index][dev_off:dev_off + run] = view[off:off + run]

    def read(self, f: File, offset: int = 0, length: int | None = None) -> bytes:
        """The bytes of `f` read straight from the devices (the builder's own view, no kernel)."""
        end = f.size if length is None else min(f.size, offset + length)
        out = bytearray()
        for _, index, dev_off, run in segments(f.fmap, end, offset):
            out += self.devices[index][dev_off:dev_off + run]
        return bytes(out)

    def set_header(self, **fields: int) -> None:
        """Overwrite log header fields (no reseal): for building deliberately bad images."""
        h = LogHeader.decode(self.devices[0], self.sb.log_offset)
        self.devices[0][self.sb.log_offset:self.sb.log_offset + HEADER_SIZE] = replace(h, **fields).encode()


def pattern(seed: str, size: int) -> bytes:
    """Deterministic content for a file, different at every offset with overwhelming probability."""
    return random.Random(seed).randbytes(size)


def device_file(path: Union[str, os.PathLike[str]], size: int) -> None:
    """Create (or resize) a sparse emulated-DAX backing file of `size` bytes."""
    with open(path, "ab") as f:
        f.truncate(size)
