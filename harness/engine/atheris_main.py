"""The one place Atheris instrumentation happens: `python -m harness.engine.atheris_main`.

Caveat: atheris reduces `include` to top-level package names, so the other harness packages are
listed in `exclude` (found on disk by `_not_famfs`) to keep them uninstrumented.

This module imports only the standard library and atheris before instrumenting, and asserts
that `harness.famfs` was not imported yet: an eager import would give a run with no coverage of
the system under test and no warning. Inside `atheris.instrument_imports(include=["harness.famfs"])`
it imports the target and the case runner, so famfs is instrumented and the (faster) harness is
not. Findings never reach libFuzzer: the runner records them and the fuzzer goes on.

Counters go to `--stats` (atomically) after every input that changed the findings, at most
`STATS_EVERY` seconds apart, and once more however the process ends: libFuzzer ends a run (its
-runs or -max_total_time budget) with exit(), which skips Python's clean-up (atexit), so the last
write is a C-level on_exit hook; SIGTERM and SIGINT write them and exit after the input in
flight (so a finding being saved is counted and saved whole).
Only a SIGKILL or a crash of the interpreter loses the last interval; the campaign then
reconciles with the crash store and libFuzzer's log.

SIGUSR1 pauses the job: after the input in flight it writes its counters and stops itself
(SIGSTOP), so a scheduled campaign keeps its loaded corpus between shares and no case's timer
runs while it is stopped; SIGCONT goes on.
"""
import argparse
import ctypes
import json
import os
import signal
import sys
import tempfile
import time

import atheris

assert "harness.famfs" not in sys.modules, "harness.famfs imported before instrumentation: no coverage"

_PAUSE = [False]              # SIGUSR1: the campaign asks this job to stop after its current input


def _pause_requested(signum: int, frame: object) -> None:
    _PAUSE[0] = True


def _continued(signum: int, frame: object) -> None:
    _PAUSE[0] = False                         # a repeated request that came in while stopping is stale


signal.signal(signal.SIGUSR1, _pause_requested)
signal.signal(signal.SIGCONT, _continued)


# Harness modules instrumented besides harness.famfs: the race targets' interleaving signal (its
# branches are the coverage; a target that uses it imports it, so it loads inside the block).
ALSO_INSTRUMENTED = ("harness.faults.statecov",)


def _not_famfs() -> list[str]:
    """Every harness module outside harness.famfs, found on disk without importing anything.
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
                    if mod != "harness" and not (mod == "harness.famfs" or mod.startswith("harness.famfs.")) \
                            and mod not in ALSO_INSTRUMENTED:
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--crashers", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-instrument", action="store_true")
    args, libfuzzer = p.parse_known_args()
    from harness.engine import allocator       # stdlib only: safe before instrumentation
    allocator.tune()                          # 1 MiB read buffers stay in the heap, not a fresh mmap each
    if args.no_instrument:
        from harness.engine.registry import load
        target = load(args.target)
    else:
        with atheris.instrument_imports(include=["harness.famfs"], exclude=_not_famfs()):
            from harness.engine.registry import load
            target = load(args.target)          # imports the target, hence famfs: instrumented
    from pathlib import Path

    from harness.engine.crashstore import CrashStore
    from harness.engine.runner import CaseRunner
    runner = CaseRunner(target, CrashStore(Path(args.crashers)), seed=args.seed, engine="atheris")
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
            _write_stats(args.stats, runner.stats.as_dict())
        if _PAUSE[0]:                            # between two inputs: no case timer is running
            _PAUSE[0] = False
            os.kill(os.getpid(), signal.SIGSTOP)

    def final() -> None:
        _write_stats(args.stats, runner.stats.as_dict())
        ext = sys.modules.get("harness.engine.external")
        if ext is not None:
            ext.close_all()
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


if __name__ == "__main__":
    main()
