"""famfs image files on disk: what the `mkfs`, `replay` and `fsck` verbs do, callable from Python.

Each function takes device arguments as the CLI does (`PATH` or `PATH=NODE_LOCAL_NAME`, primary
first), returns a result dataclass, and turns every problem with the input into a `FamfsError`
(a rejection by famfs) or an `InputError` (a file that cannot be opened): never a traceback.
"""
from __future__ import annotations

import errno
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.famfs.devices import open_device
from harness.tools.devargs import parse_device_arg
from harness.famfs.errors import FamfsError
from harness.famfs.fsck import FsckReport, fsck
from harness.famfs.image import Image, new_uuid
from harness.famfs.ids import uuid_str
from harness.famfs.invariants import Invariant
from harness.famfs.probe import Probe
from harness.famfs.layout import ALLOC_UNIT, LOG_LEN, SECONDARY_SB, SUPER_MAGIC, SUPERBLOCK, Superblock
from harness.famfs.replay import Replay, replay


class InputError(FamfsError):
    """Raised when a device argument cannot be opened or mapped (missing file, empty file, EACCES)."""


@dataclass(frozen=True, slots=True)
class DeviceArg:
    """A device on the command line: its path and the node-local name it has on this node."""

    path: str
    name: str

    @classmethod
    def parse(cls, arg: str) -> "DeviceArg":
        path, name = parse_device_arg(arg)
        return cls(path, name or os.path.basename(path))


def _open(stack: ExitStack, arg: DeviceArg, *, size: int | None = None, readonly: bool = True) -> Any:
    """Open a device argument (file or /dev/daxX.Y) as a DaxDevice closed with `stack`."""
    dev = open_device(arg.path, name=arg.name, size=size, readonly=readonly)
    stack.callback(dev.close)
    if dev.size < SUPERBLOCK.size and size is None:
        raise InputError(errno.EINVAL, Invariant.SB_VALID,
                         f"{arg.path}: {dev.size} bytes, too small for a famfs superblock")
    return dev


@dataclass
class MkfsResult:
    """What mkfs wrote: one entry per device, primary first."""

    devices: list[dict[str, object]]
    fs_uuid: str


def mkfs_files(args: Sequence[str], size: int, *, log_len: int = LOG_LEN, alloc_unit: int = ALLOC_UNIT,
               force: bool = False) -> MkfsResult:
    """Create (sparse) device files of `size` bytes and format them: args[0] primary, the rest
    secondaries, each added to the log with ADD_DAXDEV. Refuses to overwrite a valid famfs
    superblock unless `force`, like mkfs.famfs."""
    devs = [DeviceArg.parse(a) for a in args]
    with ExitStack() as stack:
        maps = []
        for d in devs:
            if not force and os.path.isfile(d.path) and _has_superblock(d.path):
                raise InputError(errno.EEXIST, Invariant.SB_VALID,
                                 f"{d.path}: holds a famfs superblock; use --force to overwrite")
            dev = _open(stack, d, size=size, readonly=False)
            maps.append(dev.view(0, dev.size))
        uuids = [new_uuid() for _ in devs]
        image = Image.mkfs(maps, [len(m) for m in maps], uuids=uuids, log_len=log_len, alloc_unit=alloc_unit)
        return MkfsResult([{"path": d.path, "uuid": uuid_str(u), "index": i,
                            "role": "primary" if i == 0 else "secondary", "size": len(m)}
                           for i, (d, u, m) in enumerate(zip(devs, uuids, maps, strict=True))],
                          uuid_str(image.sb.fs_uuid))


def _has_superblock(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(SUPERBLOCK.size)
    if len(head) < SUPERBLOCK.size:
        return False
    sb = Superblock.decode(head)
    return sb.magic == SUPER_MAGIC and sb.crc == sb.computed_crc()


@dataclass
class ReplayResult:
    """A replay of the primary plus what each given device file is (UUID, index it resolves to)."""

    replay: Replay
    devices: list[dict[str, object]]
    fsck: FsckReport | None = None
    sizes: list[int | None] = field(default_factory=list)


def replay_files(args: Sequence[str], *, with_fsck: bool = False, check_crc: bool = True) -> ReplayResult:
    """Replay the log on args[0]; identify the other device files by their superblocks' UUIDs."""
    devs = [DeviceArg.parse(a) for a in args]
    with ExitStack() as stack:
        opened = [_open(stack, d) for d in devs]
        maps = [dev.view(0, dev.size) for dev in opened]
        result = replay(maps[0], device_size=len(maps[0]), check_crc=check_crc)
        described, sizes = [], [None] * len(result.table)  # type: list[dict[str, object]], list[int | None]
        for d, m in zip(devs, maps, strict=True):
            described.append(_describe(d, m, result, sizes))
        report = fsck(result, sizes) if with_fsck else None
        return ReplayResult(result, described, report, sizes)


def _describe(d: DeviceArg, m: memoryview, result: Replay, sizes: list[int | None]) -> dict[str, object]:
    info: dict[str, object] = {"path": d.path, "name": d.name, "size": len(m), "uuid": None, "index": None}
    if len(m) >= SUPERBLOCK.size:
        sb = Superblock.decode(m)
        if sb.magic == SUPER_MAGIC and sb.crc == sb.computed_crc():
            info["uuid"] = uuid_str(sb.dev_uuid)
            info["role"] = "secondary" if sb.flags & SECONDARY_SB else "primary"
            index = result.table.index_of(sb.dev_uuid)
            info["index"] = index
            if index is not None:
                sizes[index] = len(m)
    return info


@dataclass
class Mounted:
    """A daemon ready to serve, with the devices it owns (close them when done)."""

    daemon: object
    devices: list[Any]
    host: Any = None

    def close(self) -> None:
        for d in self.devices:
            d.close()


def open_node(args: Sequence[str], *, node: str = "node0", abi: str = "pull-devt",
              capable_rawio: bool = True, probe: Probe | None = None, tolerate_refusal: bool = False) -> Mounted:
    """Open device arguments (primary first, `PATH=LOCALNAME`) as one node's DAX devices, resolve
    them by UUID and mount a daemon on them (replay included). Typed errors only."""
    from harness.famfs.daemon import Daemon, RefusedImage
    from harness.famfs.resolver import Resolver
    from harness.famfs.probe import NULL_PROBE
    opened = []
    try:
        for arg in args:
            path, name = parse_device_arg(arg)
            opened.append(open_device(path, name=name or os.path.basename(path), node=node))
        host = Resolver(node, opened, probe=probe or NULL_PROBE)
        try:
            daemon: Any = Daemon.mount(host, abi=abi, probe=probe or NULL_PROBE, capable_rawio=capable_rawio,
                                       primary=opened[0])
        except FamfsError as e:
            if not tolerate_refusal:
                raise
            daemon = RefusedImage(node, e, probe or NULL_PROBE)
    except BaseException:
        for d in opened:
            d.close()
        raise
    return Mounted(daemon, opened, host)


def mount_files(args: Sequence[str], mountpoint: str, *, node: str = "node0", abi: str = "pull-devt",
                capable_rawio: bool = True, on_ready: object = None, probe_log: str | None = None,
                after_logplay: object = None, reloadable: bool = False, after_reload: object = None) -> None:
    """`famfs-fuzz mount`: serve the famfs on `args` at `mountpoint` until unmounted or signalled.
    SIGHUP replays the log again (a client's logplay). `probe_log` records every probe event.
    `reloadable` (the mount_e2e target's mode): the kernel caches nothing, and SIGUSR1 mounts the
    devices' current image anew, as if the harness had swapped the memory under the node; an
    image famfs refuses is served as an empty root (`RefusedImage`)."""
    from harness.tools.probelog import JsonlProbe
    from harness.famfs.fuse import clean_stale, serve
    clean_stale(mountpoint)                  # a mount left by a killed daemon: unmount it first
    if not os.path.isdir(mountpoint):
        raise InputError(errno.ENOTDIR, Invariant.SB_VALID, f"{mountpoint}: not a directory")
    probe = JsonlProbe(probe_log) if probe_log else None
    mounted = open_node(args, node=node, abi=abi, capable_rawio=capable_rawio, probe=probe,
                        tolerate_refusal=reloadable)

    def reload(old: Any) -> Any:
        from harness.famfs.daemon import Daemon, RefusedImage
        host = old.host if hasattr(old, "host") else mounted.host
        host.rescan()
        try:
            new: Any = Daemon.mount(host, abi=abi, probe=old.probe, capable_rawio=capable_rawio,
                                    primary=mounted.devices[0], ino_base=old.next_ino + 1)
        except FamfsError as e:
            new = RefusedImage(node, e, old.probe, old.next_ino + 1)
        if after_reload is not None:
            after_reload(new)  # type: ignore[operator]
        return new
    try:
        serve(mounted.daemon, mountpoint, ready=on_ready, after_logplay=after_logplay,  # type: ignore[arg-type]
              reload=reload if reloadable else None, cache_timeout=0.0 if reloadable else 1.0)
    finally:
        mounted.close()
        if probe:
            probe.close()


def mount_announced(devices: list[str], mountpoint: str, *, node: str = "node0", abi: str = "pull-devt",
                    capable_rawio: bool = True, probe_log: str | None = None, reloadable: bool = False) -> None:
    """`mount_files` with the `mount` verb's progress lines on stdout (mounted, logplay, each
    reload), which the mount case and the fork server read; a FamfsError propagates."""
    def ready() -> None:
        print(f"famfs-fuzz: mounted on {mountpoint} (node {node}, abi {abi}); "
              "unmount or Ctrl-C to stop; SIGHUP replays the log", flush=True)

    def reloaded(daemon: Any) -> None:
        error = getattr(daemon, "error", None)
        state = f"rejected {error.invariant.value}" if error else f"{len(daemon.files())} files"
        print(f"famfs-fuzz: reload: {state}", flush=True)

    def logplay(daemon: Any) -> None:
        ns = daemon.namespace
        print(f"famfs-fuzz: logplay: {len(ns.dirs)} dirs, {len(ns.files)} files", flush=True)
    mount_files(devices, mountpoint, node=node, abi=abi, capable_rawio=capable_rawio, on_ready=ready,
                probe_log=probe_log, after_logplay=logplay, reloadable=reloadable, after_reload=reloaded)
