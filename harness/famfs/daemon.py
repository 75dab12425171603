"""The famfs daemon of one node: replayed state, inodes, and the GET_FMAP / GET_DAXDEV answers.

A `Daemon` finds the primary among this node's devices, replays its log (`replay.py`), resolves
every UUID of the index table to a node-local device (`devices.py`), and serves the FUSE-level
operations (lookup, getattr, readdir, read) plus the famfs messages the kernel side asks for.
Reads go through its `KernelMount` (`kernel.py`), exactly as a read(2) on a real famfs mount goes
through fs/fuse/famfs.c: GET_FMAP bytes, the daxdev table, DAX memory.

`refresh()` is a client's logplay: it replays again and picks up entries the master appended,
keeping inode numbers of what already existed (the log is append-only). Shared memory is not
coherent across hosts, so it first invalidates this node's cached superblock and log header
(`invalidate`, `shm.py`), and when an entry inside `next_index` fails its CRC or seqnum it
invalidates that entry and, if that dropped cached lines, replays once more (famfs's re-read on
a mismatch, famfs issue #59): a line cached before the master wrote the entry is then read again
from the device. Once is enough under famfs's protocol: counters that cover an entry are only
stored after the entry was flushed and fenced, so the device holds all of it.

The mounted file system's identity (file-system UUID, log offset and length, primary's UUID) is
kept from the first logplay and re-checked at every logplay, lookup, readdir (so open), GET_FMAP and read
(`check_identity`): a superblock that changed under the mount (mkfs run again on another node,
famfs issue #135) is refused with ESTALE / FS-IDENTITY, the kernel side's cached fmaps are
dropped, and from then on the daemon serves nothing of the old file system: no old fmap, no old
index table, no new file system's bytes through either.

Registration per ABI generation (`wire.Abi.registration`): pull generations answer GET_DAXDEV;
`push-fd` pushes every daxdev a file references, densely, when the file is looked up (famfs
commit b2988b5); `backing-id` opens each device with BACKING_OPEN and either passes log indices
through unchanged (`translate_ids=False`, what a daemon written for the index model would do, and
wrong) or rewrites every `se_devindex` to the kernel's id (`translate_ids=True`).

Caveats: the mount is read-only (the master writes through `image.Image` on shared memory);
`.meta/.log` is not readable through the kernel side when the log is not aligned to the ABI's
alignment (small fuzz logs), as a real kernel would refuse that map too.
"""
from __future__ import annotations

import errno
import stat
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence, Union

from harness.famfs import wire
from harness.famfs.errors import FamfsError
from harness.famfs.ids import NodeName, uuid_str
from harness.famfs.invariants import Invariant
from harness.famfs.kernel import KernelMount, push_referenced
from harness.famfs.layout import (
    ENTRY_SIZE, HEADER_SIZE, SUPER_MAGIC, SUPERBLOCK, SUPERBLOCK_SIZE, InterleavedFmap, SimpleExtent, SimpleFmap,
    Superblock, entry_offset,
)
from harness.famfs.namespace import META_DIR, File, Namespace
from harness.famfs.probe import NULL_PROBE, Probe
from harness.famfs.replay import Replay, replay

ROOT_INO = 1


class DaemonError(FamfsError):
    """Raised by the daemon for a request it cannot answer (unknown node, undefined index)."""

    @classmethod
    def no_fmap(cls, nodeid: int) -> "DaemonError":
        return cls(errno.EINVAL, Invariant.FMAP_SHAPE, f"GET_FMAP: node {nodeid} is not a famfs file")

    @classmethod
    def undefined(cls, index: int, ndevs: int) -> "DaemonError":
        return cls(errno.EINVAL, Invariant.IDX_DEFINED_BEFORE_USE,
                   f"GET_DAXDEV: index {index} not defined by the log (0..{ndevs - 1})")

    @classmethod
    def missing(cls, index: int, uuid: str, node: str) -> "DaemonError":
        return cls(errno.ENODEV, Invariant.IDX_RESOLVE, f"daxdev {index} ({uuid}) has no device on node {node}")

    @classmethod
    def remade(cls, node: str, why: str) -> "DaemonError":
        return cls(errno.ESTALE, Invariant.FS_IDENTITY, f"node {node}: the mounted file system is gone: {why}")


@dataclass(frozen=True, slots=True)
class Attr:
    """What getattr reports for one inode."""

    ino: int
    mode: int               # with the S_IF* type bits
    uid: int
    gid: int
    size: int
    nlink: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Inode:
    """One inode: its path, attributes, and for a file the layout fmap and wire file type."""

    path: str
    attr: Attr
    file: File | None = None
    file_type: int = wire.FILE_REG


class Daemon:
    """One node's famfs daemon over its `host` (the node's devices: names, dev_t, UUID resolver)."""

    def __init__(self, host: Any, *, abi: Union[str, wire.Abi] = "pull-devt", probe: Probe = NULL_PROBE,
                 capable_rawio: bool = True, translate_ids: bool = False, master: bool = False,
                 check_crc: bool = True, primary: Any = None, ino_base: int = 1):
        self.host = host
        self.node = NodeName(host.node)
        self.abi = wire.abi(abi) if isinstance(abi, str) else abi
        self.probe = probe
        self.translate_ids = translate_ids
        self.master = master
        self.check_crc = check_crc
        self.kernel = KernelMount(host, self, self.abi, capable_rawio=capable_rawio, probe=probe)
        self.mtime_ns = time.time_ns()
        self.primary = primary if primary is not None else host.primary()
        self.state: Replay | None = None
        self.inodes: dict[int, Inode] = {}
        self.by_path: dict[str, int] = {}
        self.children: dict[int, list[int]] = {}
        self.devices: list[Any] = []        # index -> node-local device (None: missing here)
        self.pushed = 0                     # push-fd: highest index pushed so far
        self.kernel_ids: dict[int, int] = {}   # backing-id: log index -> kernel id
        self.resolve_errors: dict[int, FamfsError] = {}
        self.next_ino = max(ino_base, ROOT_INO) + 1   # a remount may start above old numbers
        self.identity: bytes | None = None    # superblock bytes [16, 32) + [48, 80) of the mount
        self.gone: DaemonError | None = None  # set once the mounted file system was found re-made

    # -- mount and logplay --------------------------------------------------------------------

    @classmethod
    def mount(cls, host: Any, **kwargs: Any) -> "Daemon":
        """Replay and start serving: raises the typed rejection if the image is unusable."""
        daemon = cls(host, **kwargs)
        daemon.refresh()
        daemon.kernel.mount()
        daemon._register_primary()
        return daemon

    def refresh(self) -> Replay:
        """(Re)play the log from shared memory; new paths get new inodes, old ones keep theirs."""
        dev = self.primary
        self.check_identity()
        sb = Superblock.decode(_head(dev, SUPERBLOCK.size))
        if sb.log_offset + HEADER_SIZE <= dev.size:
            _invalidate(dev, sb.log_offset, HEADER_SIZE)        # read the counters from the device
        state = replay(dev.view(0, dev.size), device_size=dev.size, probe=self.probe, check_crc=self.check_crc)
        if state.stopped_at is not None and _invalidate(dev, sb.log_offset + entry_offset(state.stopped_at),
                                                        ENTRY_SIZE):   # stale lines dropped: re-read once
            state = replay(dev.view(0, dev.size), device_size=dev.size, probe=self.probe, check_crc=self.check_crc)
        if self.identity is None:
            self.identity = _identity(dev)
        self.state = state
        self.devices = [self._resolve(d.index, d.uuid) for d in state.table]
        if not self.inodes:
            self._meta_inodes(state)
        for node in state.namespace.walk():
            if node.path not in self.by_path:
                self._add_inode(node.path, node)
        return state

    def check_identity(self) -> None:
        """Raise ESTALE / FS-IDENTITY if the superblock under the mount is no longer the one it
        mounted (another file system made on the same memory, or the superblock gone); the
        first time, also forget every cached fmap and the old index table."""
        if self.gone is not None:
            raise self.gone
        if self.identity is None:
            _invalidate(self.primary, 0, SUPERBLOCK.size)
            return
        dev = self.primary
        _invalidate(dev, 0, SUPERBLOCK.size)
        now = _identity(dev)
        if now == self.identity:
            return
        sb = Superblock.decode(_head(dev, SUPERBLOCK.size))
        why = ("the superblock is no longer valid" if sb.magic != SUPER_MAGIC or sb.crc != sb.computed_crc()
               else f"file-system UUID {uuid_str(sb.fs_uuid)} or log region changed since the mount")
        self.gone = DaemonError.remade(self.node, why)
        self.kernel.fmaps.clear()
        self.devices = []
        raise self.gone

    def _resolve(self, index: int, uuid: bytes) -> Any:
        """The local device of `uuid`, or None: a UUID that does not resolve cleanly here (missing,
        claimed twice, vanished) costs only the files on it, never the mount (IDX-RESOLVE)."""
        if index == 0:
            return self.primary
        try:
            return self.host.resolve(uuid)
        except FamfsError as e:
            self.resolve_errors[index] = e
            return None

    def _register_primary(self) -> None:
        reg = self.abi.registration
        if reg == wire.Registration.PUSH_FD:
            self.kernel.daxdev_open(self.primary, 0)
        elif reg == wire.Registration.BACKING_ID:
            self.kernel_ids[0] = self.kernel.backing_open(self.primary)

    def _meta_inodes(self, state: Replay) -> None:
        sb = state.superblock
        now = self.mtime_ns
        self.inodes[ROOT_INO] = Inode("", Attr(ROOT_INO, stat.S_IFDIR | 0o755, 0, 0, 0, 2, now))
        self.by_path[""] = ROOT_INO
        self.children[ROOT_INO] = []
        meta, sb_ino, log_ino = self._ino(), self._ino(), self._ino()
        self._link(meta, Inode(META_DIR, Attr(meta, stat.S_IFDIR | 0o755, 0, 0, 0, 2, now)))
        self.children[meta] = []
        sb_file = File(f"{META_DIR}/.superblock", SUPERBLOCK_SIZE, 0, 0o444, 0, 0,
                       SimpleFmap.of([SimpleExtent(0, 0, SUPERBLOCK_SIZE)]), -1)
        log_file = File(f"{META_DIR}/.log", sb.log_len, 0, 0o644 if self.master else 0o444, 0, 0,
                        SimpleFmap.of([SimpleExtent(0, sb.log_offset, sb.log_len)]), -1)
        self._link(sb_ino, Inode(sb_file.path, self._file_attr(sb_ino, sb_file), sb_file, wire.FILE_SUPERBLOCK))
        self._link(log_ino, Inode(log_file.path, self._file_attr(log_ino, log_file), log_file, wire.FILE_LOG))

    def _ino(self) -> int:
        ino, self.next_ino = self.next_ino, self.next_ino + 1
        return ino

    def _file_attr(self, ino: int, f: File) -> Attr:
        return Attr(ino, stat.S_IFREG | f.mode, f.uid, f.gid, f.size, 1, self.mtime_ns)

    def _add_inode(self, path: str, node: Any) -> None:
        ino = self._ino()
        if isinstance(node, File):
            inode = Inode(path, self._file_attr(ino, node), node)
        else:
            inode = Inode(path, Attr(ino, stat.S_IFDIR | node.mode, node.uid, node.gid, 0, 2, self.mtime_ns))
            self.children[ino] = []
        self._link(ino, inode)

    def _link(self, ino: int, inode: Inode) -> None:
        self.inodes[ino] = inode
        self.by_path[inode.path] = ino
        parent = inode.path.rpartition("/")[0]
        self.children[self.by_path[parent]].append(ino)

    # -- FUSE-level operations (None / typed errors; the adapter maps them to errnos) ---------

    @property
    def namespace(self) -> Namespace:
        assert self.state is not None
        return self.state.namespace

    def getattr(self, ino: int) -> Attr | None:
        inode = self.inodes.get(ino)
        return inode.attr if inode else None

    def lookup(self, parent: int, name: str) -> Attr | None:
        p = self.inodes.get(parent)
        if p is None or p.file is not None:
            return None
        ino = self.by_path.get(f"{p.path}/{name}" if p.path else name)
        if ino is None:
            return None
        self.check_identity()
        inode = self.inodes[ino]
        if inode.file is not None:
            self._before_serving(inode.file)
        return inode.attr

    def readdir(self, ino: int) -> list[tuple[str, Attr]] | None:
        """(name, attr) of every child in creation order, or None if `ino` is not a directory."""
        self.check_identity()
        kids = self.children.get(ino)
        if kids is None:
            return None
        return [(self.inodes[k].path.rpartition("/")[2], self.inodes[k].attr) for k in kids]

    def read(self, ino: int, offset: int, length: int, *, zero_copy: bool = False) -> bytes | memoryview:
        """read(2) through the kernel side: GET_FMAP, the daxdev table, DAX memory. `zero_copy`:
        a view of DAX memory where one run covers the read (`KernelMount.read_steps`)."""
        inode = self.inodes.get(ino)
        if inode is None or inode.file is None:
            raise DaemonError.no_fmap(ino)
        self.check_identity()
        self._before_serving(inode.file)
        return self.kernel.read(ino, offset, length, zero_copy=zero_copy)

    # -- what the kernel asks ------------------------------------------------------------------

    def get_fmap(self, nodeid: int) -> bytes:
        inode = self.inodes.get(nodeid)
        if inode is None or inode.file is None:
            raise DaemonError.no_fmap(nodeid)
        self.check_identity()
        f = inode.file
        if self.abi.registration == wire.Registration.BACKING_ID and self.translate_ids:
            f = replace(f, fmap=_remap(f.fmap, self.kernel_ids))
        return wire.encode_fmap(wire.fmap_from_file(f, self.abi, inode.file_type), self.abi)

    def get_daxdev(self, index: int) -> bytes:
        assert self.state is not None
        table = self.state.table
        if not table.defined(index):
            raise DaemonError.undefined(index, len(table))
        device = self.devices[index]
        if device is None:
            raise DaemonError.missing(index, uuid_str(table[index].uuid), self.node)
        reply = wire.DaxdevReply(index=index, name=device.name.encode(), devt=device.devno)
        return wire.encode_daxdev_out(reply, self.abi)

    def _before_serving(self, f: File) -> None:
        """push-fd / backing-id: register the devices a file references before its fmap is served."""
        reg = self.abi.registration
        if reg == wire.Registration.PUSH_FD:
            self.pushed = push_referenced(self.kernel, sorted(f.devindices()), self.devices, self.pushed)
        elif reg == wire.Registration.BACKING_ID:
            for index in sorted(f.devindices()):
                dev = self.devices[index] if index < len(self.devices) else None
                if index not in self.kernel_ids and dev is not None:
                    ident = self.kernel.backing_open(dev)
                    if ident > 0:
                        self.kernel_ids[index] = ident

    # -- introspection for tests and the oracle --------------------------------------------

    def ino_of(self, path: str) -> int | None:
        return self.by_path.get(path)

    def files(self) -> list[File]:
        return [i.file for i in self.inodes.values() if i.file is not None and i.file.entry >= 0]


def _remap(fmap: Union[SimpleFmap, InterleavedFmap], ids: dict[int, int]) -> Union[SimpleFmap, InterleavedFmap]:
    """The same map with every devindex replaced by the kernel id it was registered under; an
    index with no id (its device is missing here) becomes id 0, which backing-id never hands out,
    so the kernel fails it cleanly instead of reading whichever device has that number."""
    def m(e: SimpleExtent) -> SimpleExtent:
        return SimpleExtent(ids.get(e.devindex, 0), e.offset, e.len)
    if isinstance(fmap, InterleavedFmap):
        return InterleavedFmap.of(fmap.chunk_size, [m(s) for s in fmap.strips])
    return SimpleFmap.of([m(e) for e in fmap.extents])


def _head(dev: Any, length: int) -> bytes:
    """The first `length` bytes of `dev` read from its mapping, not counted as an access (so
    an armed `fail_nth` or an access hook sees the same operations as before the identity
    check existed); a closed device raises its typed error through `view`."""
    mm = getattr(dev, "_mm", None)
    if mm is None or getattr(dev, "_closed", False):
        return bytes(dev.view(0, length))
    return bytes(mm[0:length])


def _identity(dev: Any) -> bytes:
    """What names the mounted file system in its primary's superblock: log offset and length
    (bytes [16, 32)) and the file-system and device UUIDs (bytes [48, 80))."""
    head = _head(dev, 80)
    return head[16:32] + head[48:80]


def _invalidate(dev: Any, offset: int, length: int) -> int:
    """Drop this node's cached lines of [offset, +length) of `dev`, where the device can; how
    many were dropped (0 on coherent memory, where a re-read would read the same bytes)."""
    invalidate = getattr(dev, "invalidate", None)
    return int(invalidate(offset, length) or 0) if invalidate is not None else 0


def daemons(hosts: Sequence[Any], **kwargs: Any) -> list[Daemon]:
    """Mount one daemon per host (one per node) over the same memory."""
    return [Daemon.mount(h, **kwargs) for h in hosts]


class RefusedImage:
    """What a mount serves after a reload whose image famfs refused: an empty, read-only root.
    `error` is the typed rejection; reads fail with its errno."""

    def __init__(self, node: str, error: FamfsError, probe: Probe = NULL_PROBE, next_ino: int = 2):
        self.node = node
        self.error = error
        self.probe = probe
        self.devices: list[Any] = []
        self.inodes = {ROOT_INO: Inode("", Attr(ROOT_INO, stat.S_IFDIR | 0o555, 0, 0, 0, 2, time.time_ns()))}
        self.next_ino = next_ino

    def getattr(self, ino: int) -> Attr | None:
        return self.inodes[ROOT_INO].attr if ino == ROOT_INO else None

    def lookup(self, parent: int, name: str) -> Attr | None:
        return None

    def readdir(self, ino: int) -> list[tuple[str, Attr]] | None:
        return [] if ino == ROOT_INO else None

    def read(self, ino: int, offset: int, length: int, *, zero_copy: bool = False) -> bytes:
        raise self.error
