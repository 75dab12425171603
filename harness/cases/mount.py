"""End-to-end cases through a real FUSE mount, with the daemon in a child process.

One `E2EMount` per fuzzing process: three device files mapped MAP_SHARED here and by a
`famfs-fuzz mount --reloadable --probe-log` child. Per case the harness writes the case's image
into the shared memory (the superblock regions, the log, and every extent the model says a file
uses), sends SIGUSR1 and waits for the daemon's "reload:" line, then checks through the mount:
the root listing and every file's bytes against the model (each extent / strip chunk read on
its own with pread, judged by the oracle's `check_files`, as the in-process cases are), every
lookup and internal error the daemon's probe log recorded since the last case. The mount is
reused, so a case costs a memory copy and a few syscalls, not a mount. If the child dies, that is
a finding (`DaemonDied`), and the next case starts a new one; a stale mount point left behind is
cleaned by the new child.
"""
from __future__ import annotations

import atexit
import mmap
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.tools.probelog import Tail, replay_into
from harness.famfs.invariants import Invariant
from harness.gen import decode
from harness.gen.corrupt import corrupt
from harness.gen.spec import BufferPool, build
from harness.oracle.case import Expectation, check_files, check_listing
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker
from harness.oracle.model import carried_uuid, verdict

if TYPE_CHECKING:
    from harness.cases.forkserver import Forked

MiB = 1 << 20
NDEV = 3
DEV_SIZE = 16 * MiB


class DaemonDied(Exception):
    """Raised when the mount's daemon process is gone (killed, crashed, hung past the timeout)."""


class E2EMount:
    """The reusable mount and its shared device files."""

    def __init__(self, workdir: str | None = None, timeout: float = 10.0):
        base = os.environ.get("FAMFS_FUZZ_RUN_DIR")
        if workdir is None and base:
            _clean_dead(Path(base))
            workdir = os.path.join(base, f"e2e-{os.getpid()}")
            os.makedirs(workdir, exist_ok=True)
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="famfs-e2e-"))
        self.timeout = timeout
        self.paths = [self.dir / f"dev{i}.img" for i in range(NDEV)]
        self.mnt = self.dir / "mnt"
        self.mnt.mkdir(exist_ok=True)
        self.log = self.dir / "probe.jsonl"
        self.maps = []
        for p in self.paths:
            with open(p, "wb") as f:
                f.truncate(DEV_SIZE)
            fd = os.open(p, os.O_RDWR)
            self.maps.append(mmap.mmap(fd, DEV_SIZE))
            os.close(fd)
        self.proc: Forked | None = None
        self._pending = b""                    # daemon output read but not yet cut into lines
        self.tail = Tail(self.log)
        self.pool = BufferPool()
        atexit.register(self.close)

    def _start(self) -> None:
        from harness.cases import forkserver
        self.proc = forkserver.spawn_mount([f"{p}=dax{i}.0" for i, p in enumerate(self.paths)], str(self.mnt),
                                           node="e2e", reloadable=True, probe_log=str(self.log))
        self._pending = b""
        line = self._line("mounted on")
        if "mounted on" not in line:
            raise DaemonDied(f"mount did not come up: {line!r}")

    def _line(self, marker: str) -> str:
        """The daemon's next output line holding `marker` ('' if none comes within the timeout or
        the daemon's output ends). Other lines are skipped: a handler's logged internal error
        (reported again, with its traceback, through the probe log, which judges it). Lines are
        cut from our own buffer over os.read: a buffered readline could hold the wanted line
        where select() cannot see it (the external target's batch mode had that bug)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\n" in self._pending:
                raw, self._pending = self._pending.split(b"\n", 1)
                line = raw.decode("utf-8", "replace") + "\n"
                if marker in line:
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return ""
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return ""
            self._pending += chunk

    def reload(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        line = self._line("reload:")
        if "reload:" not in line:
            code = self.proc.poll()
            self.kill()
            raise DaemonDied(f"daemon gave no reload line (exit {code}): {line!r}")
        return line.split("reload:", 1)[1].strip()

    def new_events(self) -> list[dict[str, Any]]:
        """Every probe event the daemon logged since the last call (lookups, internal errors...)."""
        return self.tail.new()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        from harness.famfs.fuse import unmount_lazy
        unmount_lazy(str(self.mnt))
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False, capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    # -- one case ---------------------------------------------------------------------------

    def case(self, data: bytes) -> Counts:
        c = decode.Choices(data)
        spec = decode.spec(c, max_devices=NDEV, dev_sizes=(DEV_SIZE,), primary_size=DEV_SIZE)
        rng_seed = decode.corruption_seed(c)
        built = build(spec, self.pool, data="stamp")
        try:
            if c.int(0, 3):
                import random
                corrupt(built.primary, random.Random(rng_seed), None)
            head_end = decode.head_end(built.primary)
            expected = verdict(built.primary[:head_end], DEV_SIZE)
            self._publish(built.devices, expected, head_end)
            state = self.reload()
            if expected.image_error:
                if state != f"rejected {expected.image_error}":
                    raise InvariantViolation(expected.image_error,
                                             f"mount served {state!r}; the model expects {expected.image_error}")
                checker = LookupChecker(site="mount")
                replay_into(checker, self.new_events())
                checker.check()                       # an internal error while refusing is one too
                return checker.counts
            if state.startswith("rejected"):
                raise InvariantViolation(Invariant.of(state.split()[1]), "mount refused an image the model accepts")
            return self._check(built, expected)
        finally:
            self.pool.give_back()

    def kill_case(self, data: bytes) -> Counts:
        """Mount a valid image, SIGKILL the daemon at a chosen point (idle, mid-read, mid-reload),
        then recover as an operator would: the dead mount is cleaned, a new daemon replays, and
        it must serve the same namespace and bytes as before the kill."""
        import threading
        c = decode.Choices(data)
        spec = decode.spec(c, max_devices=NDEV, dev_sizes=(DEV_SIZE,), primary_size=DEV_SIZE)
        point = c.int(0, 2)
        built = build(spec, self.pool, data="stamp")
        try:
            head_end = decode.head_end(built.primary)
            expected = verdict(built.primary[:head_end], DEV_SIZE)
            self._publish(built.devices, expected, head_end)
            self.reload()
            before = self._walk()
            assert self.proc is not None
            if point == 1:                                   # mid-read: a reader thread is in flight
                files = [p for p, d in expected.namespace if d[0] == "f"]
                reader = threading.Thread(target=self._read_quietly, args=(files,))
                reader.start()
                self.proc.kill()
                reader.join(timeout=self.timeout)
            elif point == 2:                                 # mid-reload
                self.proc.send_signal(signal.SIGUSR1)
                self.proc.kill()
            else:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.new_events()
            self.reload()                                    # cleans the dead mount, starts, replays
            after = self._walk()
            if after != before:
                raise InvariantViolation(Invariant.NS_CONFLICT, f"after a daemon kill (point {point}) the "
                                                                f"mount serves {sorted(after)[:4]}..., "
                                                                f"before {sorted(before)[:4]}...")
            return self._check(built, expected)
        finally:
            self.pool.give_back()

    def _walk(self) -> set[tuple[str, int]]:
        out = set()
        for root, _dirs, files in os.walk(self.mnt):
            for name in files:
                path = os.path.join(root, name)
                out.add((os.path.relpath(path, self.mnt), os.stat(path).st_size))
        return out

    def _read_quietly(self, files: list[str]) -> None:
        for p in files:
            try:
                with open(self.mnt / p, "rb") as f:
                    f.read()
            except OSError:
                return

    def _publish(self, bufs: list[bytearray], expected: Any, head_end: int) -> None:
        views = [memoryview(b) for b in bufs]          # one copy into the mapping, not a slice first
        try:
            for i, m in enumerate(self.maps):
                if i >= len(bufs):
                    m[0:4096] = bytes(4096)           # no famfs device here in this case
                    continue
                end = head_end if i == 0 else 4096
                m[0:end] = views[i][0:end]
            by_uuid = {carried_uuid(bufs[i]): i for i in range(len(bufs))}
            for _, desc in expected.namespace:
                if desc[0] != "f":
                    continue
                for dev, off, ln in desc[5]:
                    k = by_uuid.get(expected.table[dev][0])
                    if k is not None:
                        self.maps[k][off:off + ln] = views[k][off:off + ln]
        finally:
            for v in views:
                v.release()                           # the pool's buffers may be resized later

    def _check(self, built: Any, expected: Any) -> Counts:
        by_name = {f"dax{i}.0": self.maps[i] for i in range(min(NDEV, len(built.devices)))}
        exp = Expectation.of(expected, "e2e", by_name, primary="dax0.0", abi="pull-devt")
        checker = exp.checker(site="mount/pull-devt")
        try:
            listing = set(os.listdir(self.mnt))
        except OSError as e:                          # an internal error in the daemon explains it first
            replay_into(checker, self.new_events())
            checker.check()
            raise InvariantViolation(Invariant.NS_CONFLICT, f"listing the root failed: {e}", op="readdir",
                                     site="mount") from None
        if ".meta" not in listing:
            raise InvariantViolation(Invariant.NS_CONFLICT, f"root lists {sorted(listing)}, without .meta",
                                     op="readdir", site="mount")
        check_listing(expected, {name: {} for name in listing - {".meta"}}, "e2e", site="mount", top_only=True)
        with MountReader(self.mnt) as read:
            return check_files(expected.namespace, exp, read, checker,
                               feed=lambda: replay_into(checker, self.new_events()))


class MountReader:
    """`read(path, offset, length)` with pread(2) through a FUSE mount (an `oracle.case.Reader`):
    each file opened once, without readahead into the other ranges; closed at the `with`'s end."""

    def __init__(self, mnt: str | os.PathLike[str]):
        self.mnt = Path(mnt)
        self.fds: dict[str, int] = {}

    def __call__(self, path: str, offset: int, length: int) -> bytes:
        fd = self.fds.get(path)
        if fd is None:
            fd = self.fds[path] = os.open(self.mnt / path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        return os.pread(fd, length, offset)

    def __enter__(self) -> "MountReader":
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _clean_dead(base: Path) -> None:
    """Remove e2e-<pid> folders of fuzzing processes that are gone (unmounting what they left)."""
    for d in base.glob("e2e-*"):
        try:
            pid = int(d.name.split("-", 1)[1])
            os.kill(pid, 0)
            continue
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        from harness.famfs.fuse import unmount_lazy
        unmount_lazy(str(d / "mnt"))
        shutil.rmtree(d, ignore_errors=True)


_MOUNT: list[E2EMount] = []


def _mount() -> E2EMount:
    if not _MOUNT:
        _MOUNT.append(E2EMount())
    return _MOUNT[0]


def e2e_case(data: bytes) -> Counts:
    """One mount_e2e case on this process's reusable mount."""
    return _mount().case(data)


def kill_case(data: bytes) -> Counts:
    """One daemon_kill case on this process's reusable mount."""
    return _mount().kill_case(data)
