"""The one place Atheris instrumentation happens: `python -m harness.engine.atheris_main`.

What is instrumented the layer above declares (`registry.system()`, the `targets` package's
`SYSTEM`: for this project `harness.famfs` and the coverage signals `harness.faults.statecov` and `shmcov`).
Caveat: atheris reduces `include` to top-level package names, so the other harness packages are
listed in `exclude` (found on disk by `uninstrumented_modules`) to keep them uninstrumented.

This module imports only the standard library, atheris and the registry (stdlib only) before
instrumenting, and asserts that the package under test was not imported yet: an eager import would
give a run with no coverage of the system under test and no warning. Inside
`atheris.instrument_imports(include=[package])` it imports the target and the case runner, so famfs
is instrumented and the (faster) harness is not. Findings never reach libFuzzer: the runner
records them and the fuzzer goes on.

Counters go to `--stats` (atomically; a `{pid}` in the path is this process's id, so the
children libFuzzer's `-fork=N` starts from the same command line each write their own) after
every input that changed the findings, at most `STATS_EVERY` seconds apart, and once more
however the process ends: libFuzzer ends a run (its -runs or -max_total_time budget) with
exit(), which skips Python's clean-up (atexit), so the last
write is a C-level on_exit hook; SIGTERM and SIGINT write them and exit after the input in
flight (so a finding being saved is counted and saved whole).
Only a SIGKILL or a crash of the interpreter loses the last interval; the campaign then
reconciles with the crash store and libFuzzer's log.

SIGUSR1 pauses the job: after the input in flight it writes its counters and stops itself
(SIGSTOP), so a scheduled campaign keeps its loaded corpus between shares and no case's timer
runs while it is stopped; SIGCONT goes on.

Memory: libFuzzer's `-rss_limit_mb` judges the process's *peak* RSS (getrusage), and on Linux a
child starts with its parent's peak (the forked copy's resident pages, kept across exec): a job
spawned by a process that once held more than the limit (the bench, after its in-process rates)
was reported out of memory, on whatever input ran, at libFuzzer's first check, one second in.
So the limit is the runner's, on the current RSS every 64 inputs (`rss_limit_mb`, from the
flag, default 2048), and libFuzzer's own check, the backstop for one runaway input, gets the
limit plus the peak this process started with (`_rss_flags`).
"""
import argparse
import ctypes
import json
import os
import resource
import signal
import sys
import tempfile
import time

import atheris

from harness.engine.registry import run_exit_hooks, system

_SUT = system()
assert not _SUT.package or _SUT.package not in sys.modules, \
    f"{_SUT.package} imported before instrumentation: no coverage"

_PAUSE = [False]              # SIGUSR1: the campaign asks this job to stop after its current input


def _pause_requested(signum: int, frame: object) -> None:
    _PAUSE[0] = True


def _continued(signum: int, frame: object) -> None:
    _PAUSE[0] = False                         # a repeated request that came in while stopping is stale


signal.signal(signal.SIGUSR1, _pause_requested)
signal.signal(signal.SIGCONT, _continued)


def uninstrumented_modules() -> list[str]:
    """Every harness module outside the package under test and `also_instrumented` (the race
    targets' interleaving signal, whose branches are the coverage; a target that uses it imports
    it, so it loads inside the block), found on disk without importing anything.
    atheris.instrument_imports cuts `include` down to the top-level package ("harness"), so
    these must be excluded by name to keep the harness itself uninstrumented."""
    import importlib.util
    spec = importlib.util.find_spec("harness")
    names = []
    for base in (spec.submodule_search_locations or []) if spec else []:
        for root, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            rel = os.path.relpath(root, os.path.dirname(base)).replace(os.sep, ".")
            for f in files:
                if f.endswith(".py"):
                    mod = rel if f == "__init__.py" else f"{rel}.{f[:-3]}"
                    if mod != "harness" and not _SUT.covers(mod) and mod not in _SUT.also_instrumented:
                        names.append(mod)
    return names


STATS_EVERY = 0.5


def _write_stats(path: str, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".stats-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


_HOOKS: list = []         # the C callbacks must outlive main()


def _at_exit(fn) -> None:
    """Run `fn` when the process calls exit() (glibc on_exit; libFuzzer's way to end a run). It
    runs in the thread that called exit(): libFuzzer's loop, the main thread, holding the GIL."""
    hook = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)(lambda status, arg: fn())
    _HOOKS.append(hook)
    ctypes.CDLL(None).on_exit(hook, None)


def _rss_flags(libfuzzer: list[str], default_mb: int = 2048) -> tuple[int, list[str]]:
    """The RSS limit asked for (the last `-rss_limit_mb=N`, else `default_mb`; 0 is none) and
    libFuzzer's arguments with that limit raised by the peak RSS this process inherited."""
    limit = default_mb
    rest = []
    for a in libfuzzer:
        if a.startswith("-rss_limit_mb="):
            limit = int(a.split("=", 1)[1])
        else:
            rest.append(a)
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10      # KiB -> MiB
    return limit, [*rest, f"-rss_limit_mb={limit + inherited if limit else 0}"]


def _load(names, instrument: bool) -> dict:
    """Import the targets `names` (hence famfs: instrumented unless `instrument` is false)."""
    from harness.engine import allocator       # stdlib only: safe before instrumentation
    allocator.tune()                          # 1 MiB read buffers stay in the heap, not a fresh mmap each
    if not instrument:
        from harness.engine.registry import load
        return {n: load(n) for n in names}
    with atheris.instrument_imports(include=[_SUT.package], exclude=uninstrumented_modules()):
        from harness.engine.registry import load
        return {n: load(n) for n in names}


def _parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--crashers", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-instrument", action="store_true")
    return p.parse_known_args(argv)


def main(argv=None, loaded=None) -> None:
    """One job: `argv` as on the command line; `loaded` the targets a zygote imported already."""
    args, libfuzzer = _parse(argv)
    target = (loaded or {}).get(args.target) or _load([args.target], not args.no_instrument)[args.target]
    stats_path = args.stats.replace("{pid}", str(os.getpid()))   # libFuzzer -fork: one file per process
    from pathlib import Path

    from harness.engine.crashstore import CrashStore
    from harness.engine.runner import CaseRunner
    rss_limit, libfuzzer = _rss_flags(libfuzzer)
    runner = CaseRunner(target, CrashStore(Path(args.crashers)), seed=args.seed, engine="atheris",
                        rss_limit_mb=rss_limit or 1 << 40)
    last = [time.monotonic()]

    busy, leave = [False], [False]

    def one(data: bytes) -> None:
        found = runner.stats.findings
        busy[0] = True
        runner.run_one(data)
        busy[0] = False
        if leave[0]:                             # SIGTERM/SIGINT came during this input
            final()
            os._exit(0)
        now = time.monotonic()
        if runner.stats.findings != found or now - last[0] >= STATS_EVERY or _PAUSE[0]:
            last[0] = now
            _write_stats(stats_path, runner.stats.as_dict())
        if _PAUSE[0]:                            # between two inputs: no case timer is running
            _PAUSE[0] = False
            os.kill(os.getpid(), signal.SIGSTOP)

    def final() -> None:
        _write_stats(stats_path, runner.stats.as_dict())
        run_exit_hooks()                      # what case modules hold across inputs (external programs)
    _at_exit(final)

    def on_signal(signum: int, frame: object) -> None:
        if busy[0]:                              # finish the input first: its finding is saved whole
            leave[0] = True
            return
        final()
        os._exit(0)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)
    # libFuzzer re-runs argv[0] through the shell for -merge=1 and -fork: give it a command line.
    me = " ".join([sys.executable, "-m", "harness.engine.atheris_main", "--target", args.target,
                   "--crashers", args.crashers, "--stats", args.stats, "--seed", str(args.seed)]
                  + (["--no-instrument"] if args.no_instrument else []))
    argv = [me, f"-seed={args.seed}", *libfuzzer]
    if target.mutator is not None:
        atheris.Setup(argv, one, custom_mutator=target.mutator)
    else:
        atheris.Setup(argv, one)
    try:
        atheris.Fuzz()
    finally:
        final()


def zygote(names) -> None:
    """Import and instrument once, then fork one job per request (`harness.engine.zygote`).

    A request is one line on stdin: a JSON object with `argv` (this module's arguments), `log`
    (the job's stdout and stderr) and `env` (variables to set). The answer is a line `pid N`; a
    job's end is reported as `exit N STATUS` (STATUS as subprocess gives it: -signal when killed).
    The zygote stays single-threaded (fork copies only the calling thread) and ends when its
    stdin closes; its jobs get SIGTERM when it dies."""
    import select
    loaded = _load(names, True)
    from harness.engine.crashstore import CrashStore  # noqa: F401  (the jobs' imports, paid once)
    from harness.engine.runner import CaseRunner  # noqa: F401
    out = sys.stdout

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
            out.flush()
    buf = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.2)
        reap()
        if not ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            out.flush()
            pid = os.fork()
            if pid == 0:
                _job(req, loaded)
            out.write(f"pid {pid}\n")
            out.flush()


def _job(req: dict, loaded: dict) -> None:
    """In a forked job: its own stdout/stderr and environment, SIGTERM if the zygote dies."""
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        os.environ.update(req.get("env") or {})
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)
        main(req["argv"], loaded)
    except BaseException:  # noqa: BLE001 - the job's own log says why; never back into the zygote's loop
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--zygote":
        zygote(sys.argv[2].split(","))
    else:
        main()
