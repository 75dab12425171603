"""The one place Atheris instrumentation happens: `python -m harness.engine.atheris_main`.

Caveat: atheris reduces `include` to top-level package names, so the other harness packages are
listed in `exclude` (found on disk by `_not_famfs`) to keep them uninstrumented.

This module imports only the standard library and atheris before instrumenting, and asserts
that `harness.famfs` was not imported yet: an eager import would give a run with no coverage of
the system under test and no warning. Inside `atheris.instrument_imports(include=["harness.famfs"])`
it imports the target and the case runner, so famfs is instrumented and the (faster) harness is
not. Findings never reach libFuzzer: the runner records them and the fuzzer goes on; counters are
written to `--stats` (atomically, about once a second) because libFuzzer ends the process with
exit(), which skips Python's clean-up.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import atheris

assert "harness.famfs" not in sys.modules, "harness.famfs imported before instrumentation: no coverage"


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
    for base in spec.submodule_search_locations if spec else []:
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


def _write_stats(path: str, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".stats-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--crashers", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-instrument", action="store_true")
    args, libfuzzer = p.parse_known_args()
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
    last = [0.0]

    def one(data: bytes) -> None:
        runner.run_one(data)
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            _write_stats(args.stats, runner.stats.as_dict())

    import atexit
    atexit.register(lambda: _write_stats(args.stats, runner.stats.as_dict()))
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
        _write_stats(args.stats, runner.stats.as_dict())


if __name__ == "__main__":
    main()
