"""pyfuse3 adapter: mounts a `Daemon` on a real FUSE mount point; READ goes through the kernel side.

Thin on purpose (after pyfuse3's passthroughfs): each handler converts arguments, calls one
`Daemon` method and builds the reply. `_errors` is the one error path: a `FamfsError` becomes
`FUSEError(errno)`; anything else is logged, reported to the probe as an internal error and
answered with EIO, since only FUSEError may escape a handler. `serve()` is the mount lifecycle:
clean a stale mount point, init, run until unmounted or SIGINT/SIGTERM, unmount; SIGHUP
replays the log again (a client's logplay).

Caveats: reads go through the page cache (keep_cache=False: dropped at every open), so within one
open a re-read, or a read that readahead already fetched (up to `READ_AHEAD_KB` ahead of a
sequential reader; none past the range for a POSIX_FADV_RANDOM one), may return bytes another
node has since written; real famfs reads DAX memory each time. FOPEN_DIRECT_IO would send every
read(2) here, but then MAP_SHARED mmap of a file fails with ENODEV unless
FUSE_DIRECT_IO_ALLOW_MMAP is negotiated, which libfuse 3.14 (what pyfuse3 links here) cannot do.
keep_cache=True would be wrong twice over: a later open would also serve the old bytes, and every
read after the first would skip GET_FMAP, the daxdev table and the probe.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import re
import signal
import subprocess
from typing import Any, Callable, Concatenate, Coroutine, ParamSpec, TypeVar

import pyfuse3
import trio

from harness.famfs.daemon import Attr, Daemon
from harness.famfs.errors import FamfsError

log = logging.getLogger("famfs.fuse")
T = TypeVar("T")
P = ParamSpec("P")
ATTR_TIMEOUT = 1.0


def _errors(fn: Callable[Concatenate["FamfsOperations", P], Coroutine[Any, Any, T]]
            ) -> Callable[Concatenate["FamfsOperations", P], Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def handler(self: "FamfsOperations", *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except FamfsError as e:
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception as e:  # noqa: BLE001 - only FUSEError may leave a handler
            log.exception("internal error in %s", fn.__name__)
            self.daemon.probe.internal_error(fn.__name__, e)
            raise pyfuse3.FUSEError(errno.EIO) from None
    return handler


class FamfsOperations(pyfuse3.Operations):
    """The FUSE operations of a read-only famfs mount, served by one `Daemon`."""

    def __init__(self, daemon: Daemon, cache_timeout: float = ATTR_TIMEOUT):
        super().__init__()
        self.daemon = daemon
        self.cache_timeout = cache_timeout
        self.bdi: str | None = None         # the mount's read_ahead_kb, to widen at the first open

    def _entry(self, a: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = a.ino
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_size = a.size
        e.st_blksize = 1 << 21
        e.st_blocks = (a.size + 511) // 512
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = a.mtime_ns
        e.entry_timeout = e.attr_timeout = self.cache_timeout
        return e

    @_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        attr = self.daemon.lookup(parent_inode, os.fsdecode(name))
        if attr is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(attr)

    @_errors
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        attr = self.daemon.getattr(inode)
        if attr is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(attr)

    @_errors
    async def opendir(self, inode: int, ctx: Any = None) -> int:
        if self.daemon.readdir(inode) is None:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    @_errors
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        entries = self.daemon.readdir(fh) or []
        for i, (name, attr) in enumerate(entries[start_id:], start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(attr), i + 1):
                break

    @_errors
    async def releasedir(self, fh: int) -> None:
        return None

    @_errors
    async def open(self, inode: int, flags: int, ctx: Any = None) -> pyfuse3.FileInfo:
        attr = self.daemon.getattr(inode)
        if attr is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise pyfuse3.FUSEError(errno.EROFS)
        if self.daemon.readdir(inode) is not None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if self.bdi is not None:             # INIT is done by now (it precedes every request)
            widen_requests(self.bdi)
            self.bdi = None
        return pyfuse3.FileInfo(fh=inode, keep_cache=False)

    @_errors
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        # pyfuse3 replies from any buffer; its stub says bytes, and a copy here is what zero_copy avoids
        return self.daemon.read(fh, off, size, zero_copy=True)     # pyfuse3 replies from the buffer

    @_errors
    async def release(self, fh: int) -> None:
        return None

    @_errors
    async def statfs(self, ctx: Any = None) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 1 << 21
        size = sum(d.size for d in self.daemon.devices if d is not None)
        s.f_blocks = size // s.f_frsize
        s.f_bfree = s.f_bavail = 0
        s.f_files = len(self.daemon.inodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 79
        return s


def clean_stale(mountpoint: str) -> bool:
    """If `mountpoint` is a dead FUSE mount (its daemon was killed: ENOTCONN), lazily unmount it.
    Returns True if something was cleaned."""
    try:
        os.stat(mountpoint)
        return False
    except OSError as e:
        if e.errno not in (errno.ENOTCONN, errno.ECONNABORTED):
            return False
    unmount_lazy(mountpoint)
    return True


MNT_DETACH = 2                                  # umount2(2) flag: detach now, free when no longer busy


def unmount_lazy(mountpoint: str) -> None:
    """Detach `mountpoint` (`fusermount3 -u -z`): as root one umount2(MNT_DETACH) system call, which
    spares a daemon started after a kill the fusermount3 process (about 5 ms of wall clock and 2-3
    ms of CPU); fusermount3 otherwise, or when the call fails (not mounted is no error either way)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(os.fsencode(mountpoint), MNT_DETACH) == 0 or ctypes.get_errno() == errno.EINVAL:
            return                              # EINVAL: nothing is mounted there
    subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False, capture_output=True)


def mount_options(node: str, permissions: bool = True) -> set[str]:
    """Read-only famfs mount options; `permissions=False` drops default_permissions (the kernel
    then checks no modes: the harness's e2e mode reads every file whatever the log's modes)."""
    opts = set(pyfuse3.default_options)
    opts |= {"fsname=famfs", "subtype=famfs", "ro"}
    if not permissions:
        opts.discard("default_permissions")
    return opts


# A read(2) reaches the daemon in requests of at most max(readahead window, 128 KiB). libfuse 3.14
# negotiates 256 pages (FUSE_MAX_PAGES), and INIT caps the mount's readahead at the kernel's
# default 128 KiB: so a 4 MiB range read was 32 round trips of about 95 us each.
READ_AHEAD_KB = 1024


def bdi_of(want: str) -> str | None:
    """The sysfs folder of the backing device of the mount on the real path `want` (the newest
    one), from /proc/self/mountinfo: no request to the mount itself, which may not be served yet
    (resolve the path before mounting: a stat of the mount's root would wait for its INIT)."""
    dev = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])   # \040: a space
                if point == want:
                    dev = fields[2]
    except OSError:
        return None
    return f"/sys/class/bdi/{dev}" if dev else None


def widen_requests(bdi: str, kb: int = READ_AHEAD_KB) -> bool:
    """Let the kernel send a read(2) of the mount as requests of up to `kb` KiB: the mount's
    read_ahead_kb, written after INIT (which would cap it again). Pages are still fetched only for
    the range a reader asked for when it reads with POSIX_FADV_RANDOM, as the harness's readers
    do (a sequential reader's readahead window grows to `kb`: see the caveat above). Needs root;
    False (and the 128 KiB requests) where the file cannot be written."""
    try:
        with open(os.path.join(bdi, "read_ahead_kb"), "w") as f:
            f.write(str(kb))
        return True
    except OSError as e:
        log.debug("cannot widen FUSE requests (%s): %s", bdi, e)
        return False


def serve(daemon: Daemon, mountpoint: str, *, ready: Callable[[], None] | None = None,
          after_logplay: Callable[[Daemon], None] | None = None,
          reload: Callable[[Daemon], Daemon] | None = None, cache_timeout: float = ATTR_TIMEOUT) -> None:
    """Mount `daemon` on `mountpoint` and serve until unmounted or SIGINT/SIGTERM; then unmount.
    SIGHUP: logplay. SIGUSR1 with `reload`: swap in `reload(old)` (the harness changed the whole
    image; use cache_timeout 0 then, so the kernel caches nothing of the old one)."""
    clean_stale(mountpoint)
    ops = FamfsOperations(daemon, cache_timeout)
    where = os.path.realpath(mountpoint)
    pyfuse3.init(ops, mountpoint, mount_options(daemon.node, permissions=reload is None))
    ops.bdi = bdi_of(where)
    try:
        trio.run(_main, ops, ready, after_logplay, reload)
    finally:
        pyfuse3.close(unmount=True)


async def _main(ops: FamfsOperations, ready: Callable[[], None] | None,
                after_logplay: Callable[[Daemon], None] | None,
                reload: Callable[[Daemon], Daemon] | None) -> None:
    async with trio.open_nursery() as nursery:
        async def on_signal(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                           signal.SIGUSR1) as signals:
                task_status.started()            # handlers are in place: now we may say "ready"
                async for signum in signals:
                    if signum == signal.SIGHUP:          # a client's logplay
                        try:
                            ops.daemon.refresh()
                        except FamfsError as e:
                            log.error("logplay failed: %s", e)
                        if after_logplay is not None:
                            after_logplay(ops.daemon)
                        continue
                    if signum == signal.SIGUSR1:
                        if reload is not None:
                            ops.daemon = reload(ops.daemon)
                        continue
                    pyfuse3.terminate()
                    return
        await nursery.start(on_signal)
        if ready is not None:
            ready()
        await pyfuse3.main()
        nursery.cancel_scope.cancel()
