#!/usr/bin/env python3
"""Measure `fuzz --jobs N` both ways, ours (N jobs sharing one corpus directory) and libFuzzer's
(-fork=N, corpora merged by libFuzzer), with the same target and time (docs/benchmarks.md):

    .venv/bin/python scripts/bench_parallel.py [--seconds 60] [--jobs 2] [TARGET ...]
    .venv/bin/python scripts/bench_parallel.py --plant FAMILY     # a bug of tests/quality/test_planted.py

Per run: executions and findings (the crash store's count), the second of the first signature,
corpus files at the end, and the coverage features of seeds + that corpus replayed once by one
fresh process (libFuzzer's INITED ft), so both modes are judged by the same measure. Runs in a
temporary directory; with --plant, on a copy of the tree with that bug planted (its target)."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def features(target: str, dirs: list[Path], work: Path, root: Path = ROOT) -> tuple[int, int]:
    """(cov, ft) of the inputs in `dirs`, run once (-runs=0) in one uninstrumented-harness process."""
    cmd = [sys.executable, "-m", "harness.engine.atheris_main", "--target", target, "--crashers",
           str(work / "replay-crashers"), "--stats", str(work / "replay-stats.json"), "-runs=0", *map(str, dirs)]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600).stderr
    m = re.search(r"INITED cov: (\d+) ft: (\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def one(target: str, mode: str, seconds: int, jobs: int, work: Path, root: Path = ROOT) -> dict:
    corpus, crashers = work / "corpus", work / "crashers"
    cmd = [sys.executable, "-m", "harness.cli", "fuzz", target, "--jobs", str(jobs), "--parallel", mode,
           "--max-time", str(seconds), "--seed", "1", "--corpus", str(corpus), "--crashers", str(crashers), "--json"]
    env = dict(os.environ, PYTHONPATH=str(root))
    doc = json.loads(subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                                    timeout=seconds + 300).stdout)
    files = sum(1 for p in corpus.iterdir() if p.is_file())
    cov, ft = features(target, [corpus, root / "corpora" / target], work, root)
    first = next((s["t"] for s in doc["series"] if s["signatures"]), None)
    return {"target": target, "mode": mode, "execs": doc["execs"], "seconds": doc["seconds"],
            "findings": doc["findings"], "signatures": len(doc["signatures"]), "corpus": files, "cov": cov, "ft": ft,
            "first": first}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("targets", nargs="*", default=["log_replay", "log_structured"])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--plant", help="a family of tests/quality/test_planted.py PLANTS: fuzz its target on a copy")
    args = ap.parse_args()
    print("| target | parallel | execs | exec/s | corpus files | cov | ft (seeds + corpus) | findings | first (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-parallel-tree-") as trees:
        root, targets = ROOT, args.targets
        if args.plant:
            sys.path.insert(0, str(ROOT))
            from tests.quality.test_planted import PLANTS, buggy_copy
            target, file, old, new, _ = PLANTS[args.plant]
            root, targets = buggy_copy(Path(trees), file, old, new), [target]
        for target in targets:
            for mode in ("ours", "libfuzzer"):
                with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
                    r = one(target, mode, args.seconds, args.jobs, Path(tmp), root)
                first = "-" if r["first"] is None else f"{r['first']:.0f}"
                print(f"| {r['target']} | {r['mode']} | {r['execs']:,} | {r['execs'] / max(r['seconds'], 1e-9):,.0f} "
                      f"| {r['corpus']:,} | {r['cov']:,} | {r['ft']:,} | {r['findings']} | {first} |", flush=True)


if __name__ == "__main__":
    main()
