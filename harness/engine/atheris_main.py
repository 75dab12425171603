"""The one place Atheris instrumentation happens: `python -m harness.engine.atheris_main`.

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
        with atheris.instrument_imports(include=["harness.famfs"]):
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
    argv = [sys.argv[0], f"-seed={args.seed}", *libfuzzer]
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
