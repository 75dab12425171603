"""Mount daemons forked from the fuzzing process itself instead of started as new interpreters.

`mount_e2e` and `daemon_kill` run the daemon in a child (`famfs-fuzz mount --reloadable`), and
`daemon_kill` starts a new one in every case. A new interpreter spends 0.3-0.4 s importing
(pyfuse3 and trio are 0.57 s of the 0.73 s import time of the mount verb, `python -X importtime`)
before it replays anything; a fork of a process that already imported everything serves within
16-23 ms (measured on this 2-core machine, same session: 284-413 ms for the new interpreter).

`spawn(run)` forks; the child resets the signal handlers it inherited (libFuzzer's, the
runner's), asks for SIGTERM when its parent dies (a killed campaign leaves no daemon), points
stdout and stderr at a pipe and calls `run()` (its return value is the exit status), then leaves
with `os._exit` (no atexit handler, no libFuzzer clean-up of the parent's state runs in it).
`spawn_mount` runs what `famfs-fuzz mount` runs (`images.mount_files`) and prints the same
lines: "mounted on", "logplay:", "reload:" are what the mount drivers wait for. The parent gets a
`Forked`, which answers the part of `subprocess.Popen` the mount drivers use: `pid`, `stdout`
(text, line-buffered reads), `poll`, `wait(timeout)`, `send_signal`, `kill`.

Caveat: fork copies the fuzzing process, so the child starts with its memory (copy on write)
and, under Atheris, with instrumented famfs modules; threads of the parent do not exist in it
(the mount drivers start none before they spawn).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import IO, Callable, Sequence

from harness.engine.procs import Signals

_RESET = tuple(s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                           signal.SIGALRM, signal.SIGCHLD, signal.SIGPIPE) if s is not None)


def preload() -> None:
    """Import what a mount needs, so that the forked children have it already."""
    import harness.tools.files  # noqa: F401
    import harness.tools.probelog  # noqa: F401
    import harness.famfs.fuse  # noqa: F401


class Forked(Signals):
    """A forked child, seen as much like `subprocess.Popen` as the mount drivers need."""

    def __init__(self, pid: int, stdout: IO[str], args: Sequence[str]):
        self.pid, self.stdout, self.args = pid, stdout, list(args)
        self.returncode: int | None = None

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            code = self._reap(0)
            assert code is not None
            return code
        end = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.002)
        return code


def spawn(run: Callable[[], int], label: Sequence[str] = ()) -> Forked:
    """Fork a child that calls `run()` and exits with its value; its output on `stdout`."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                          # the child: never returns
        code = 1
        try:
            os.close(r)
            for s in _RESET:
                signal.signal(s, signal.SIG_DFL)
            import ctypes
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
            os.dup2(w, 1)
            os.dup2(w, 2)
            os.close(w)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            code = int(run())
        except BaseException:                             # noqa: BLE001 - the child must end here
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(w)
    return Forked(pid, os.fdopen(r, "r", buffering=1), label)


def spawn_mount(devices: Sequence[str], mountpoint: str, *, node: str = "node0", abi: str = "pull-devt",
                reloadable: bool = False, probe_log: str | None = None) -> Forked:
    """`famfs-fuzz mount DEVICES MOUNTPOINT --node NODE --abi ABI [--reloadable] [--probe-log P]`,
    forked: the same engine call and the same progress lines."""
    def run() -> int:
        from harness.tools.files import mount_announced
        from harness.famfs.errors import FamfsError
        try:
            mount_announced(list(devices), mountpoint, node=node, abi=abi, probe_log=probe_log, reloadable=reloadable)
        except FamfsError as e:
            print(f"famfs-fuzz: {e}", flush=True)
            return 2
        return 0
    return spawn(run, ["mount", *devices, mountpoint])
