"""The emulated famfs kernel side of one FUSE mount: fmap parse and cache, the daxdev table, faults.

What fs/fuse/famfs.c does, as an object per mount (docs/famfs-format.md sections 3-5):

* INIT: FUSE_DAX_FMAP is in effect only when the kernel offers it and the server is
  CAP_SYS_RAWIO-capable; without it GET_FMAP / GET_DAXDEV are refused (EOPNOTSUPP) and famfs
  files cannot be read.
* GET_FMAP: the daemon's reply bytes are decoded (`wire.decode_fmap`) and validated as the
  kernel of the selected ABI generation does, then cached once per file (never refreshed).
* The daxdev table (`daxtable.DaxdevTable`) starts with only index 0; every other index is
  discovered when an fmap first references it. How depends on the generation's registration:
  `pull-name` / `pull-devt` send GET_DAXDEV(index) and resolve the reply's name or dev_t on this
  node; `push-fd` expects the daemon to have pushed (device, index) before it served the fmap,
  and marks the file bad otherwise; `backing-id` hands out its own ids (1, 2, ... in open order,
  never 0) and keys the table by them, so an fmap that carries log indices is looked up by the
  wrong key unless the daemon translates.
* A read resolves file offset -> (index, device offset) -> `lookup(index)` -> DAX memory.
  `lookup` is the one function every index lookup goes through, and it reports to the probe.
* Lazy discovery is retried, never cached as a failure: a pull generation whose GET_DAXDEV
  failed (the daemon could not resolve the UUID yet, the device was absent or faulty, the node
  was answered for another index) leaves the slot invalid, and the next lookup of that invalid
  slot sends GET_DAXDEV again before it fails. So an index whose cause of failure is gone (the
  device appeared, the fault was lifted, the daemon replayed the entry that defines it) reads on
  its next access; the cached fmap never has to be re-pulled. Only a slot marked dax_err (the
  device could not be taken as a holder) stays failed, as the kernel caches that (docs/famfs-format.md section 4).

Errors are the kernel's: EIO for an invalid or failed slot, an index past the table, a file
marked bad; EINVAL for a reply that does not parse. They come out as `KernelError` (a
`FamfsError`), which the FUSE adapter turns into the errno.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Generator, Protocol, Sequence, Union

from harness.famfs import wire
from harness.famfs.daxtable import DaxdevTable, SlotView, _finish
from harness.famfs.errors import FamfsError
from harness.famfs.ids import NodeName
from harness.famfs.invariants import Invariant
from harness.famfs.probe import NULL_PROBE, Probe


Steps = Generator[str, None, Any]
Bytes = Union[bytes, memoryview]


class KernelError(FamfsError):
    """Raised by the kernel side: a refused reply (EINVAL), a failed lookup or fault (EIO)."""

    index: int | None = None

    @classmethod
    def bad_fmap(cls, message: str) -> "KernelError":
        return cls(errno.EINVAL, Invariant.FMAP_SHAPE, message)

    @classmethod
    def lookup_failed(cls, index: int, message: str) -> "KernelError":
        err = cls(errno.EIO, Invariant.IDX_LOOKUP, f"daxdev index {index}: {message}")
        err.index = index                 # which slot the failed lookup asked for
        return err

    @classmethod
    def not_enabled(cls) -> "KernelError":
        return cls(errno.EOPNOTSUPP, Invariant.IDX_PRIMARY,
                   "FUSE_DAX_FMAP not negotiated (server lacks CAP_SYS_RAWIO or kernel did not offer it)")


class Device(Protocol):
    """A DAX device as the kernel sees it: a node-local name, a dev_t, bounded reads."""

    @property
    def name(self) -> str: ...

    @property
    def devno(self) -> int: ...

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def read_view(self, offset: int, length: int) -> memoryview:
        """`read` without the copy (only zero-copy reads call it)."""
        ...


class Host(Protocol):
    """This node's /dev: finds a DAX device by node-local name or by dev_t (None if absent)."""

    @property
    def node(self) -> str: ...

    def by_name(self, name: str) -> Device | None: ...

    def by_devno(self, devno: int) -> Device | None: ...


class Server(Protocol):
    """The daemon as the kernel talks to it: reply bytes for GET_FMAP and GET_DAXDEV."""

    def get_fmap(self, nodeid: int) -> bytes: ...

    def get_daxdev(self, index: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Run:
    """One resolved piece of a read: `length` bytes at `dev_offset` of daxdev `index`."""

    index: int
    dev_offset: int
    length: int


@dataclass(frozen=True)
class KernelFmap:
    """A validated, cached file map (the kernel's `famfs_file_meta`)."""

    file_size: int
    message: wire.FmapMessage
    indices: frozenset[int]
    bad: bool = False

    def resolve(self, offset: int) -> Run | None:
        """file offset -> (index, device offset, run length), or None past the map.

        This is deliberately not `fmap.resolve`, though the arithmetic is the same: it stands for
        the kernel's own fmap walker (famfs's kernel module, separate code from the userspace that
        wrote the log), and the image builder places file bytes with `fmap`. Were they one
        function, a bug planted in it (or made in it) would move the writes and the reads alike,
        and the DATA check, which reads files back through this walker, could never see it
        (`tests/quality/test_oracle_plants.py` plants such a bug here). The shape differs too: a
        wire map may carry several interleaved extents, each covering `ie_nbytes` of the file
        (at most the file size), one after the other, where a log entry holds exactly one."""
        m = self.message
        if m.ext_type == wire.EXT_SIMPLE:
            for e in m.extents:
                if offset < e.len:
                    return Run(e.devindex, e.offset + offset, e.len - offset)
                offset -= e.len
            return None
        for ie in m.interleaved:
            span = min(ie.nbytes, self.file_size)
            if offset < span:
                c, within = divmod(offset, ie.chunk_size)
                strip = ie.strips[c % ie.nstrips]
                dev_off = (c // ie.nstrips) * ie.chunk_size + within
                if dev_off >= strip.len:
                    return None
                return Run(strip.devindex, strip.offset + dev_off, min(ie.chunk_size - within, strip.len - dev_off))
            offset -= span
        return None


class KernelMount:
    """The kernel side of one famfs-over-FUSE mount on one node."""

    def __init__(self, host: Host, server: Server, abi: wire.Abi, *, capable_rawio: bool = True,
                 kernel_offers_fmap: bool = True, probe: Probe = NULL_PROBE, table: DaxdevTable | None = None):
        self.host = host
        self.node = NodeName(host.node)
        self.server = server
        self.abi = abi
        self.probe = probe
        self.enabled = wire.negotiate_init(abi, abi.init_flag if kernel_offers_fmap else 0, capable_rawio)
        self.table = table if table is not None else DaxdevTable(abi.nslots)
        self.fmaps: dict[int, KernelFmap] = {}
        self.next_backing_id = 1            # backing-id: idr_alloc_cyclic(1, ...) never hands out 0
        self.lookups = 0
        self._pulls = self.enabled and abi.registration.pulls
        self.registrations = 0              # GET_DAXDEV round trips, DAXDEV_OPEN / BACKING_OPEN calls

    # -- registration (push-fd / backing-id: called by the daemon; pull: by ourselves) -------

    def daxdev_open(self, device: Device, index: int) -> int:
        """push-fd: FUSE_DEV_IOC_DAXDEV_OPEN(fd, index) -> 0 or -errno."""
        if not self.enabled:
            return -errno.EOPNOTSUPP
        self.registrations += 1
        rc = self.table.install(index, device.devno, device, device.name)
        if rc == 0 and self.probe.enabled:
            self.probe.slot_published(self.node, index, device.name, True)
        return rc

    def backing_open(self, device: Device) -> int:
        """backing-id: FUSE_DEV_IOC_BACKING_OPEN(fd) -> a kernel-chosen id (>= 1) or -errno."""
        if not self.enabled:
            return -errno.EOPNOTSUPP
        self.registrations += 1
        for view in (self.table.read_slot(i) for i in range(1, self.table.nslots)):
            if view and view.valid and view.devno == device.devno:
                return view.index
        ident = self.next_backing_id
        if ident >= self.table.nslots:
            return -errno.ENOSPC
        self.next_backing_id += 1
        self.table.install(ident, device.devno, device, device.name)
        if self.probe.enabled:
            self.probe.slot_published(self.node, ident, device.name, True)
        return ident

    def pull_steps(self, index: int) -> Steps:
        """pull-*: GET_DAXDEV(index), resolve the reply on this node, install the slot. Failures
        are logged and ignored, as the kernel does: the slot stays invalid (or dax_err)."""
        self.registrations += 1
        yield f"GET_DAXDEV({index}) sent"
        try:
            reply = wire.decode_daxdev_out(self.server.get_daxdev(index), self.abi)
        except FamfsError:
            return None
        yield f"GET_DAXDEV({index}) replied"
        if reply.index != index:
            return None
        if self.abi.registration == wire.Registration.PULL_DEVT:
            device = self.host.by_devno(reply.devt)
        else:
            device = self.host.by_name(reply.name.decode("utf-8", "replace"))
        if device is None:                  # not on this node (now): the slot stays invalid, retried
            return None
        rc = yield from self.table.install_steps(index, device.devno, device, device.name)
        if rc == 0 and self.probe.enabled:
            self.probe.slot_published(self.node, index, device.name, True)
        return None

    def _pull(self, index: int) -> None:
        _finish(self.pull_steps(index))

    def mount(self) -> None:
        """At mount only the primary (index 0) is known; pull generations fetch it now."""
        if self.enabled and self.abi.registration.pulls:
            self._pull(0)

    # -- GET_FMAP -----------------------------------------------------------------------------

    def fmap_steps(self, nodeid: int) -> Steps:
        """The cached map of `nodeid`; on first use GET_FMAP, validate, discover missing devices."""
        cached = self.fmaps.get(nodeid)
        if cached is not None:
            return cached
        if not self.enabled:
            raise KernelError.not_enabled()
        try:
            message = wire.decode_fmap(self.server.get_fmap(nodeid), self.abi)
        except FamfsError as e:
            raise KernelError.bad_fmap(f"GET_FMAP reply for node {nodeid}: {e.message}") from None
        yield f"GET_FMAP({nodeid}) parsed"
        kf = self._validate(message)
        missing = [i for i in sorted(kf.indices) if not self._slot_ok(i)]
        if missing and self.abi.registration.pulls:
            for index in missing:
                yield from self.pull_steps(index)
        elif missing and self.abi.registration == wire.Registration.PUSH_FD:
            kf = KernelFmap(kf.file_size, kf.message, kf.indices, bad=True)
        self.fmaps.setdefault(nodeid, kf)                # cached once (cmpxchg): first one wins
        return self.fmaps[nodeid]

    def fmap(self, nodeid: int) -> KernelFmap:
        return _finish(self.fmap_steps(nodeid))

    def _slot_ok(self, index: int) -> bool:
        view = self.table.read_slot(index)
        return view is not None and view.valid and not view.dax_err

    def _validate(self, m: wire.FmapMessage) -> KernelFmap:
        abi = self.abi
        align = abi.alignment
        if m.ext_type == wire.EXT_SIMPLE:
            extents = m.extents
            if not 1 <= len(extents) <= abi.max_extents:
                raise KernelError.bad_fmap(f"{len(extents)} extents, allowed 1..{abi.max_extents}")
        elif m.ext_type == wire.EXT_INTERLEAVE and abi.interleave_ok:
            if not 1 <= len(m.interleaved) <= abi.max_extents:
                raise KernelError.bad_fmap(f"{len(m.interleaved)} interleaved extents")
            extents = ()
            for ie in m.interleaved:
                if not 1 <= ie.nstrips <= abi.max_strips or len(ie.strips) != ie.nstrips:
                    raise KernelError.bad_fmap(f"nstrips {ie.nstrips} not in 1..{abi.max_strips}")
                if ie.chunk_size == 0 or ie.chunk_size % align or ie.nbytes == 0:
                    raise KernelError.bad_fmap(f"chunk {ie.chunk_size:#x} / nbytes {ie.nbytes:#x} invalid")
                extents += tuple(ie.strips)
        else:
            raise KernelError.bad_fmap(f"ext_type {m.ext_type} not accepted by {abi.name}")
        total = 0
        for e in extents:
            if e.devindex >= self.table.nslots:
                raise KernelError.bad_fmap(f"dev_index {e.devindex} >= {self.table.nslots} slots")
            if e.len == 0 or e.offset % align or e.len % align:
                raise KernelError.bad_fmap(f"extent [{e.offset:#x}, +{e.len:#x}) not {align:#x}-aligned")
            if e.offset + e.len > (1 << 64) - 1:
                raise KernelError.bad_fmap("extent overflows u64")
            total += e.len
        if m.ext_type == wire.EXT_INTERLEAVE:
            total = sum(ie.nbytes for ie in m.interleaved)
        if total < m.file_size:
            raise KernelError.bad_fmap(f"extents cover {total:#x} < file size {m.file_size:#x}")
        return KernelFmap(m.file_size, m, frozenset(e.devindex for e in extents))

    # -- faults -------------------------------------------------------------------------------

    def lookup_steps(self, index: int) -> Steps:
        """The one table lookup: every fault goes through here, and the probe hears of each."""
        self.lookups += 1
        view = yield from self.table.read_steps(index)
        if view is not None and not view.valid and not view.dax_err and self._pulls:
            yield from self.pull_steps(index)            # lazy discovery is retried, not cached
            view = yield from self.table.read_steps(index)
        if view is None:
            err, why = errno.EIO, f"index >= {self.table.nslots} slots"
        elif not view.valid:
            err, why = errno.EIO, "slot not valid (device not discovered)"
        elif view.dax_err or view.error:
            err, why = errno.EIO, "device failed"
        else:
            err, why = 0, ""
        if self.probe.enabled:
            name = view.name if (view is not None and err == 0) else None
            devno = view.devno if (view is not None and err == 0) else 0
            self.probe.lookup(self.node, index, name, devno, err)
        if err:
            raise KernelError.lookup_failed(index, why)
        return view

    def lookup(self, index: int) -> SlotView:
        return _finish(self.lookup_steps(index))

    def read_steps(self, nodeid: int, offset: int, length: int, *, zero_copy: bool = False) -> Steps:
        """read(2) of a famfs file: resolve each run through the table and copy from DAX memory.
        `zero_copy`: when one run covers the read, return a view of the DAX memory instead of a
        copy (the FUSE adapter hands it to the kernel, which copies it once, into the reader's
        buffer); bytes otherwise."""
        kf = yield from self.fmap_steps(nodeid)
        if kf.bad:
            raise KernelError(errno.EIO, Invariant.IDX_LOOKUP, "file marked bad: a referenced daxdev is missing")
        end = min(kf.file_size, offset + length)
        out = []
        while offset < end:
            run = kf.resolve(offset)
            if run is None:
                raise KernelError(errno.EIO, Invariant.FMAP_SHAPE, f"offset {offset:#x} not mapped")
            view = yield from self.lookup_steps(run.index)
            n = min(run.length, end - offset)
            if view.device is None:                     # a half-published slot: the kernel would oops
                raise KernelError(errno.EFAULT, Invariant.TBL_PUBLISH, f"slot {run.index} valid without a device")
            try:
                if zero_copy:
                    out.append(view.device.read_view(run.dev_offset, n))
                else:
                    out.append(view.device.read(run.dev_offset, n))
            except FamfsError as e:
                raise KernelError(e.errno, e.invariant, e.message) from None
            if self.probe.enabled:
                self.probe.extent_resolved(self.node, str(nodeid), offset, run.index, run.dev_offset, n)
            offset += n
        if zero_copy and len(out) == 1:
            return out[0]
        return b"".join(out)

    def read(self, nodeid: int, offset: int, length: int, *, zero_copy: bool = False) -> Bytes:
        """read(2), run to completion (no scheduler)."""
        return _finish(self.read_steps(nodeid, offset, length, zero_copy=zero_copy))

    def teardown(self) -> None:
        self.table.clear()
        self.fmaps.clear()

    def discovered(self) -> list[int]:
        return self.table.valid_indices()


def push_referenced(kernel: KernelMount, indices: Sequence[int], devices: Sequence[Any], pushed: int) -> int:
    """push-fd daemon helper: push daxdevs densely from `pushed`+1 up to max(indices), in order,
    stopping at the first failure (b2988b5). Returns the new highest pushed index."""
    top = max(indices, default=-1)
    for index in range(pushed + 1, top + 1):
        device = devices[index] if index < len(devices) else None
        if device is None or kernel.daxdev_open(device, index) != 0:
            break
        pushed = index
    return pushed
