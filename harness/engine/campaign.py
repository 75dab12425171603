"""Fuzz campaigns: run one target under Atheris (libFuzzer, in child processes) or Hypothesis.

`fuzz()` keeps going after findings (each is a crash folder), shows progress, and returns a
`FuzzResult` with executions, exec/s, lookups checked and new signatures. Atheris jobs run as
`python -m harness.engine.atheris_main` children, each writing its counters to a stats file;
their libFuzzer output goes to a log in the run directory. The Hypothesis engine runs in this
process: inputs are drawn from the target's strategy (bytes), after the corpus files were run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.engine.crashstore import CrashStore
from harness.engine.registry import Target, load
from harness.engine.runner import CaseRunner, Stats

ENGINES = ("atheris", "hypothesis")


@dataclass
class FuzzResult:
    """What a campaign did."""

    target: str
    engine: str
    execs: int = 0
    seconds: float = 0.0
    lookups: int = 0
    findings: int = 0
    signatures: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)     # one sample a second

    @property
    def execs_per_s(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "engine": self.engine, "execs": self.execs,
                "seconds": round(self.seconds, 2), "execs_per_s": round(self.execs_per_s, 1),
                "lookups_checked": self.lookups, "findings": self.findings,
                "signatures": self.signatures, "new_signatures": self.new, "logs": self.logs,
                "series": self.series}

    def add(self, s: dict[str, Any]) -> None:
        self.execs += s.get("execs", 0)
        self.lookups += s.get("lookups_checked", 0)
        self.findings += s.get("findings", 0)
        self.signatures.update(s.get("signatures", {}))
        self.new.update(s.get("new_signatures", {}))


def die_with_parent() -> None:
    """In a child: SIGTERM when the parent dies (PR_SET_PDEATHSIG), so a killed campaign leaves
    no fuzzing process or mount daemon behind."""
    import ctypes
    import signal
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def corpus_inputs(dirs: Sequence[Path]) -> list[bytes]:
    out = []
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and not p.name.startswith(".") and p.name != "README.md":
                    out.append(p.read_bytes())
    return out


def fuzz(name: str, *, engine: str = "atheris", max_time: float | None = 60.0, runs: int | None = None,
         jobs: int = 1, corpus: Path | None = None, crashers: Path = Path("crashers"),
         corpora: Path = Path("corpora"), workdir: Path = Path("runs"), seed: int | None = None,
         libfuzzer_args: Sequence[str] = (), progress: Callable[[str], None] | None = None,
         stop_on_new: bool = False) -> FuzzResult:
    """Fuzz target `name`; see the module docstring. `stop_on_new` ends the campaign at the first
    new signature (a PR-style run)."""
    target = load(name)
    seed = seed if seed is not None else int(time.time()) & 0x7FFFFFFF
    seeds_dir = corpora / name
    if engine == "hypothesis":
        return _hypothesis(target, max_time, runs, CrashStore(crashers), [seeds_dir] + ([corpus] if corpus else []),
                           seed, progress, stop_on_new)
    if engine != "atheris":
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    run_dir = workdir / name
    work_corpus = corpus or (run_dir / "corpus")
    work_corpus.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    series: list[dict[str, Any]] = []
    started = time.monotonic()
    for j in range(jobs):
        stats = run_dir / f"stats-{j}.json"
        stats.unlink(missing_ok=True)
        log = run_dir / f"fuzz-{j}.log"
        flags = [f"-max_len={target.max_len}", f"-timeout={max(5, int(target.timeout_s * 5))}",
                 "-rss_limit_mb=4096", "-print_final_stats=1", f"-artifact_prefix={run_dir}/"]
        if max_time is not None:
            flags.append(f"-max_total_time={max(1, int(max_time))}")
        if runs is not None:
            flags.append(f"-runs={runs}")
        dirs = [str(work_corpus)] + ([str(seeds_dir)] if seeds_dir.is_dir() else [])
        cmd = [sys.executable, "-m", "harness.engine.atheris_main", "--target", name,
               "--crashers", str(crashers), "--stats", str(stats), "--seed", str(seed + j),
               *flags, *libfuzzer_args, *dirs]
        env = dict(os.environ, FAMFS_FUZZ_RUN_DIR=str(run_dir.resolve()))
        with open(log, "w") as out:
            procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                           preexec_fn=die_with_parent), stats, log))
    try:
        last_line = last_sample = started
        while any(p.poll() is None for p, _, _ in procs):
            time.sleep(0.25)
            now = time.monotonic()
            stats_now = [_read(s) for _, s, _ in procs]
            if stop_on_new and any(st.get("new_signatures") for st in stats_now):
                for p, _, _ in procs:
                    p.terminate()
            if now - last_sample >= 1.0:
                last_sample = now
                series.append(_sample(now - started, stats_now, work_corpus, [lg for _, _, lg in procs]))
            if progress and now - last_line >= 5.0:
                last_line = now
                progress(_line(name, started, stats_now, max_time, corpus=series[-1]["corpus"] if series else None))
    except KeyboardInterrupt:
        for p, _, _ in procs:
            p.terminate()
        for p, _, _ in procs:
            p.wait()
    result = FuzzResult(name, "atheris", seconds=time.monotonic() - started)
    series.append(_sample(result.seconds, [_read(s) for _, s, _ in procs], work_corpus, [lg for _, _, lg in procs]))
    result.series = series
    for p, stats, log in procs:
        result.add(_read(stats))
        result.logs.append(str(log))
        if p.returncode not in (0, None) and not _read(stats):
            raise RuntimeError(f"atheris job died (exit {p.returncode}); see {log}:\n"
                               + log.read_text()[-2000:])
    return result


_COV = re.compile(rb"cov: (\d+) ft: (\d+)")


def _coverage(logs: list[Path]) -> int:
    """The highest libFuzzer 'cov:' (edges of harness.famfs) in the tail of the jobs' logs."""
    best = 0
    for log in logs:
        try:
            with open(log, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 8192))
                found = _COV.findall(f.read())
            if found:
                best = max(best, int(found[-1][0]))
        except OSError:
            pass
    return best


def _sample(t: float, stats: list[dict[str, Any]], corpus: Path, logs: list[Path]) -> dict[str, Any]:
    try:
        size = sum(1 for _ in corpus.iterdir())
    except OSError:
        size = 0
    return {"t": round(t, 2), "execs": sum(s.get("execs", 0) for s in stats),
            "lookups": sum(s.get("lookups_checked", 0) for s in stats),
            "signatures": len({k for s in stats for k in s.get("signatures", {})}),
            "corpus": size, "cov": _coverage(logs)}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _line(name: str, started: float, stats: list[dict[str, Any]], budget: float | None,
          corpus: int | None = None) -> str:
    el = time.monotonic() - started
    execs = sum(s.get("execs", 0) for s in stats)
    crashes = len({k for s in stats for k in s.get("signatures", {})})
    lookups = sum(s.get("lookups_checked", 0) for s in stats)
    b = f"/{budget:.0f}" if budget else ""
    c = f"  corpus {corpus}" if corpus is not None else ""
    return (f"  {name}: {el:5.0f}{b} s  {execs} execs  {execs / max(el, 1e-9):,.0f}/s{c}  {lookups} lookups  "
            f"{crashes} signatures")


class _Stop(BaseException):
    """Ends a Hypothesis campaign at its time or run budget (not a test failure)."""


def _hypothesis(target: Target, max_time: float | None, runs: int | None, store: CrashStore,
                dirs: list[Path], seed: int, progress: Callable[[str], None] | None,
                stop_on_new: bool = False) -> FuzzResult:
    from hypothesis import HealthCheck, given, settings, strategies as st
    runner = CaseRunner(target, store, seed=seed, engine="hypothesis")
    for data in corpus_inputs(dirs):
        runner.run_one(data)
    strategy = target.strategy if target.strategy is not None else st.binary(max_size=min(target.max_len, 4096))
    deadline = time.monotonic() + (max_time if max_time is not None else 1e12)
    budget = runs if runs is not None else 1 << 60
    last = [time.monotonic()]

    @settings(max_examples=1 << 30, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[__import__("hypothesis").Phase.generate])
    @given(strategy)
    def one(data: bytes) -> None:
        runner.run_one(data)
        now = time.monotonic()
        if progress and now - last[0] >= 5:
            last[0] = now
            progress(_line(target.name, runner.stats.started, [runner.stats.as_dict()], max_time))
        if now >= deadline or runner.stats.execs >= budget or (stop_on_new and runner.stats.new):
            raise _Stop()

    try:
        one()
    except _Stop:
        pass
    result = FuzzResult(target.name, "hypothesis", seconds=runner.stats.seconds)
    result.add(runner.stats.as_dict())
    return result


def run_inputs(target: Target, inputs: Sequence[bytes], store: CrashStore | None = None) -> Stats:
    """Run every input once (regress, corpus replay); findings go to `store` if given."""
    runner = CaseRunner(target, store, engine="replay")
    for data in inputs:
        runner.run_one(data)
    return runner.stats


def write_seeds(target: Target, corpora: Path) -> int:
    """Write the target's seeds to corpora/<name>/ as files named by content hash."""
    import hashlib
    d = corpora / target.name
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for data in target.seeds():
        path = d / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
            n += 1
    return n


def merge(target_name: str, corpora: Path, into: Path | None = None, workdir: Path = Path("runs")) -> int:
    """Coverage-preserving merge (libFuzzer -merge=1) of runs/<name>/corpus into corpora/<name>/
    (or prune corpora/<name>/ itself when nothing else is there). Returns the file count after."""
    dest = into or (corpora / target_name)
    sources = [p for p in [workdir / target_name / "corpus", dest] if p.is_dir()]
    fresh = dest.parent / f".{dest.name}.merge"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    stats = workdir / target_name / "stats-merge.json"
    stats.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "harness.engine.atheris_main", "--target", target_name,
           "--crashers", str(workdir / target_name / "merge-crashers"), "--stats", str(stats),
           "-merge=1", str(fresh), *map(str, sources)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    regress = dest / "regress"
    kept = [p for p in fresh.iterdir() if p.is_file()]
    had = corpus_inputs(sources)
    if done.returncode != 0 or (had and not kept):       # never lose the corpus to a failed merge
        shutil.rmtree(fresh, ignore_errors=True)
        raise RuntimeError(f"merge of {target_name} failed (exit {done.returncode}); corpus left as it was:\n"
                           + (done.stdout or "")[-1500:])
    names = {p.name for p in kept}
    for p in kept:                                       # the kept inputs land first ...
        os.replace(p, dest / p.name)
    for p in dest.iterdir():                             # ... then the redundant ones go: a kill in
        if p.is_file() and p.name != "README.md" and p.name not in names:   # between loses nothing
            p.unlink()
    shutil.rmtree(fresh, ignore_errors=True)
    return len(kept) + (sum(1 for _ in regress.iterdir()) if regress.is_dir() else 0)
