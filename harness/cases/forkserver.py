"""Mount daemons forked from an already-imported interpreter instead of started as new ones.

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
lines: "mounted on", "logplay:", "reload:" are what the mount drivers wait for. It has the
`Zygote` fork the daemon (a small interpreter started once, whose children are ours: see there),
and forks this process itself where the zygote cannot run. The parent gets a `Forked`, which
answers the part of `subprocess.Popen` the mount drivers use: `pid`, `stdout` (text,
line-buffered reads), `poll`, `wait(timeout)`, `send_signal`, `kill`.

Caveat: a fork of this process (`spawn`) starts with its memory (copy on write) and, under
Atheris, with instrumented famfs modules; threads of the parent do not exist in it (the mount
drivers start none before they spawn).
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import functools
import gc
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any, Callable, NoReturn, Sequence

from harness.engine.procs import Signals

_RESET = tuple(s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                           signal.SIGALRM, signal.SIGCHLD, signal.SIGPIPE) if s is not None)
PR_SET_PDEATHSIG = 1


def preload() -> None:
    """Import what a mount needs, so that the forked children have it already (`open_node`
    imports the resolver when it runs: each daemon compiled or loaded it anew, 3 ms where no
    bytecode is cached)."""
    import harness.tools.files  # noqa: F401
    import harness.tools.probelog  # noqa: F401
    import harness.famfs.fuse  # noqa: F401
    import harness.famfs.resolver  # noqa: F401


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
        os.close(r)
        _child(run, w)
    os.close(w)
    return Forked(pid, os.fdopen(r, "r", buffering=1), label)


def _child(run: Callable[[], int], out: int) -> NoReturn:
    """A forked child's life: default signal handlers, SIGTERM when the parent dies, `out` as its
    stdout and stderr, `run()`, then `os._exit` with its value (1 on an exception, printed)."""
    code = 1
    try:
        for s in _RESET:
            signal.signal(s, signal.SIG_DFL)
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        code = int(run())
    except BaseException:                                 # noqa: BLE001 - the child must end here
        import traceback
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def spawn_mount(devices: Sequence[str], mountpoint: str, *, node: str = "node0", abi: str = "pull-devt",
                reloadable: bool = False, probe_log: str | None = None) -> Forked:
    """`famfs-fuzz mount DEVICES MOUNTPOINT --node NODE --abi ABI [--reloadable] [--probe-log P]`,
    forked: the same engine call and the same progress lines. Forked by the zygote (`Zygote`)
    where it runs, from this process otherwise."""
    how = {"devices": list(devices), "mountpoint": mountpoint, "node": node, "abi": abi,
           "reloadable": reloadable, "probe_log": probe_log}
    label = ["mount", *devices, mountpoint]
    zygote = Zygote.shared()
    if zygote is not None:
        try:
            return zygote.spawn(how, label)
        except OSError:                                   # it died: fork here from now on
            Zygote.retire()
    preload()                                             # once: later forks find pyfuse3 and trio imported
    return spawn(lambda: _mount(how), label)


def _mount(how: dict[str, Any]) -> int:
    """What `famfs-fuzz mount` runs, from `spawn_mount`'s arguments; its exit status."""
    from harness.tools.files import mount_announced
    from harness.famfs.errors import FamfsError
    try:
        mount_announced(how["devices"], how["mountpoint"], node=how["node"], abi=how["abi"],
                        probe_log=how["probe_log"], reloadable=how["reloadable"])
    except FamfsError as e:
        print(f"famfs-fuzz: {e}", flush=True)
        return 2
    return 0


class Zygote:
    """A small interpreter that forks the mount daemons, so that the fuzzing process does not.

    A fork costs what the forking process has mapped: from a fuzzing process of about 120 MiB (its
    pooled device buffers, its heap at its peak) a fork and the child's exit take about 10 ms of
    CPU, and every page the fuzzing process writes afterwards while the daemon lives is copied
    once more (copy on write). The zygote is a new interpreter (this process's `sys.path`) that
    imports what a mount needs (`preload`), freezes it for the garbage collector and then only
    forks: about 30 MiB, never written between forks. Its children are this process's own:
    the zygote forks with CLONE_PARENT (`clone_parent`), so `Forked` waits for them as before,
    their CPU time counts in this process's children, and PR_SET_PDEATHSIG still names this
    process (the thread that started the zygote). One request per daemon over a socket pair: the
    arguments of `spawn_mount` and the write end of the daemon's output pipe; the reply is its pid.
    The zygote ends when this process closes the socket or dies.

    Caveat: a daemon from the zygote runs the famfs modules as they are on disk, not this
    process's copies (under Atheris: not instrumented; monkeypatches of this process are not in
    it); libFuzzer never saw the daemon's coverage anyway (it runs in another process)."""

    _shared: dict[int, "Zygote | None"] = {}             # by the pid of the process it forks for

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prog = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
                "from harness.cases.forkserver import zygote_main; zygote_main(int(sys.argv[2]), int(sys.argv[3]))")
        path = [p or os.getcwd() for p in sys.path]
        self.proc = subprocess.Popen([sys.executable, "-c", prog, json.dumps(path), str(theirs.fileno()),
                                      str(os.getpid())], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        if self.sock.recv(16) != b"ready":
            self.close()
            raise OSError(errno.ECHILD, "the zygote did not start")

    @classmethod
    def shared(cls) -> "Zygote | None":
        """This process's zygote, started on first use; None where it cannot run (not Linux on
        x86_64 or aarch64, or it failed to start or died: the callers fork themselves then). A
        process forked from one that has a zygote starts its own: the daemons of the inherited
        one would be the other process's children."""
        me = os.getpid()
        if me not in cls._shared:
            try:
                cls._shared[me] = cls() if _SYS_CLONE.get(platform.machine()) else None
            except OSError:
                cls._shared[me] = None
            else:
                atexit.register(cls.retire)
        return cls._shared[me]

    @classmethod
    def retire(cls) -> None:
        """Stop this process's zygote for good (the daemons it forked are not touched)."""
        zygote = cls._shared.get(os.getpid())
        cls._shared[os.getpid()] = None
        if zygote is not None:
            zygote.close()

    def spawn(self, how: dict[str, Any], label: Sequence[str]) -> Forked:
        """A daemon running `_mount(how)`, its output on the returned `Forked`'s stdout."""
        r, w = os.pipe()
        try:
            socket.send_fds(self.sock, [json.dumps(how).encode()], [w])
        except OSError:
            os.close(r)
            raise
        finally:
            os.close(w)
        reply = self.sock.recv(32)
        if not reply.lstrip(b"-").isdigit() or int(reply) <= 0:
            os.close(r)
            raise OSError(errno.ECHILD, f"the zygote could not fork: {reply!r}")
        return Forked(int(reply), os.fdopen(r, "r", buffering=1), label)

    def close(self) -> None:
        self.sock.close()                                 # the zygote reads EOF and leaves
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def zygote_main(fd: int, parent: int) -> None:
    """The zygote (`Zygote`): fork a daemon for each request on socket `fd` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)          # a Ctrl-C is the fuzzing process's to handle
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:                            # the fuzzing process is gone already
        return
    sock = socket.socket(fileno=fd)
    preload()
    gc.freeze()                      # a daemon's collections skip what it inherited (no copy on write)
    sock.send(b"ready")
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
        if not msg:
            return
        try:
            pid = clone_parent()
        except OSError as e:
            pid = -(e.errno or errno.EAGAIN)
        if pid == 0:                                      # the daemon: never returns
            sock.close()
            _child(functools.partial(_mount, json.loads(msg)), fds[0])
        os.close(fds[0])
        sock.send(str(pid).encode())


CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}               # clone(2)'s number; the first two arguments agree


def clone_parent() -> int:
    """fork(), except that the child's parent is this process's parent (clone(2) with
    CLONE_PARENT | SIGCHLD): 0 in the child, its pid here. Python's own fork hooks run around it,
    as in `os.fork`. For a single-threaded process only (the zygote): glibc's fork handlers do not
    run (no other thread can hold a lock then)."""
    api = ctypes.pythonapi
    sys.stdout.flush()
    sys.stderr.flush()
    api.PyOS_BeforeFork()
    pid = ctypes.PyDLL(None, use_errno=True).syscall(_SYS_CLONE[platform.machine()],
                                                     CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone(CLONE_PARENT) failed")
    return pid
