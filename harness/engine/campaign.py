"""Fuzz campaigns: run one target under Atheris (libFuzzer, in child processes) or Hypothesis.

`fuzz()` keeps going after findings (each is a crash folder), shows progress, streams a line per
new signature as it appears, and returns a `FuzzResult` with executions, exec/s, lookups checked,
signatures and the libFuzzer coverage at the start (after loading the corpus, "INITED") and at
the end. Atheris jobs run as `python -m harness.engine.atheris_main` children, each writing its
counters to a stats file; their libFuzzer output goes to a log in the run directory. The
Hypothesis engine runs in this process: inputs are drawn from the target's strategy (bytes),
after the corpus files were run.

Nothing is lost at the end of a run, however it ends (a runs or time budget, SIGINT/SIGTERM, the
child dying): the child writes its counters after every finding, at most 0.5 s apart and from a
C-level exit hook; then `fuzz` reconciles what the jobs said with the crash store (the counts
recorded during this run) and with libFuzzer's own log (executed units), so the reported
executions and findings are what happened. `runs=N` is the executions of the whole campaign,
split over its jobs; a job given n executes max(n, corpus inputs + 1): libFuzzer runs every
corpus input (and one empty input) before it checks -runs; `corpus_execs` in the result says
how many.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.engine.crashstore import CrashStore, HarnessError
from harness.engine.registry import Target, load
from harness.engine.runner import CaseRunner, Stats

ENGINES = ("atheris", "hypothesis")
COUNTERS = ("lookups_ok", "lookups_justified", "lookups_unjustified", "internal_errors")

OnFinding = Callable[[str, str, str, Path], None]          # (target, key, title, crash folder)


def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class EngineDied(HarnessError):
    """An engine child ended with an error before it ran a single input (a harness problem)."""


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
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    internal_signatures: dict[str, str] = field(default_factory=dict)
    cov_start: int | None = None          # libFuzzer cov/ft after loading the corpus (INITED)
    ft_start: int | None = None
    cov_end: int | None = None            # ... and the highest at the end
    ft_end: int | None = None
    corpus_execs: int = 0                 # executions spent running the corpus (libFuzzer's INITED #)
    runs_budget: int | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)               # jobs that died, with their log

    @property
    def execs_per_s(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0

    @property
    def coverage_grew(self) -> bool | None:
        """Did libFuzzer's coverage grow past what the corpus gave (None: not measured)?"""
        if self.ft_start is None or self.ft_end is None:
            return None
        return (self.ft_end or 0) > self.ft_start or (self.cov_end or 0) > (self.cov_start or 0)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "engine": self.engine, "execs": self.execs,
                "seconds": round(self.seconds, 2), "execs_per_s": round(self.execs_per_s, 1),
                "lookups_checked": self.lookups, "findings": self.findings,
                "signatures": self.signatures, "new_signatures": self.new, "logs": self.logs,
                **self.counters, "internal_signatures": self.internal_signatures,
                "cov_start": self.cov_start, "ft_start": self.ft_start, "cov_end": self.cov_end,
                "ft_end": self.ft_end, "coverage_grew": self.coverage_grew,
                "corpus_execs": self.corpus_execs, "runs_budget": self.runs_budget,
                "interrupted": self.interrupted, "errors": self.errors, "series": self.series}

    def add(self, s: dict[str, Any]) -> None:
        """Add one job's stats (a runner's `Stats.as_dict()`); counters it lacks count 0."""
        self.execs += s.get("execs", 0)
        self.lookups += s.get("lookups_checked", 0)
        self.findings += s.get("findings", 0)
        self.signatures.update(s.get("signatures", {}))
        self.new.update(s.get("new_signatures", {}))
        for k in COUNTERS:
            self.counters[k] = self.counters.get(k, 0) + int(s.get(k) or 0)
        self.internal_signatures.update(s.get("internal_signatures") or {})

    def merge(self, other: "FuzzResult") -> None:
        """Fold another campaign of the same target into this one (a target's shares in a job)."""
        self.execs += other.execs
        self.seconds += other.seconds
        self.lookups += other.lookups
        self.findings += other.findings
        self.signatures.update(other.signatures)
        self.new.update(other.new)
        self.logs += other.logs
        for k in COUNTERS:
            self.counters[k] = self.counters.get(k, 0) + other.counters.get(k, 0)
        self.internal_signatures.update(other.internal_signatures)
        if self.cov_start is None:
            self.cov_start, self.ft_start = other.cov_start, other.ft_start
        for attr in ("cov_end", "ft_end"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if theirs is not None:
                setattr(self, attr, theirs if mine is None else max(mine, theirs))
        self.corpus_execs += other.corpus_execs
        self.interrupted = self.interrupted or other.interrupted
        self.errors += other.errors


def counters_text(r: FuzzResult) -> str:
    """The lookup verdicts and internal errors, for a result line (empty while nothing reports them)."""
    c = r.counters
    if not any(c.get(k) for k in COUNTERS):
        return ""
    return (f"lookups ok {c['lookups_ok']} justified {c['lookups_justified']} unjustified "
            f"{c['lookups_unjustified']}, internal errors {c['internal_errors']}")


def flat_warning(r: FuzzResult, shares: int = 1) -> str | None:
    """The warning line for a target whose coverage never grew past its corpus's, or None."""
    if r.coverage_grew is not False:
        return None
    over = f" in {shares} shares" if shares > 1 else ""
    return (f"WARNING {r.target}: coverage never grew past its corpus (cov {r.cov_start} ft {r.ft_start} after "
            f"loading it, cov {r.cov_end} ft {r.ft_end} at the end{over}, {r.execs:,} execs): a harness problem")


def die_with_parent() -> None:
    """In a child: SIGTERM when the parent dies (PR_SET_PDEATHSIG), so a killed campaign leaves
    no fuzzing process or mount daemon behind."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def corpus_inputs(dirs: Sequence[Path]) -> list[bytes]:
    out = []
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and not p.name.startswith(".") and p.name != "README.md":
                    out.append(p.read_bytes())
    return out


def store_counts(crashers: Path, target: str) -> dict[str, tuple[int, str]]:
    """key -> (count, title) of every crash folder of `target` in the store under `crashers`."""
    out = {}
    d = Path(crashers) / target
    if d.is_dir():
        for p in d.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                try:
                    doc = json.loads((p / "crash.json").read_text())
                    out[p.name] = (int(doc.get("count", 0)), str(doc.get("title", "")))
                except (OSError, ValueError):
                    pass
    return out


def reconcile(result: FuzzResult, before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> None:
    """Make the result's findings what the crash store recorded during the run (hits counted in
    crash.json since `before`), whatever the jobs managed to write before they ended."""
    hits = 0
    for key, (count, title) in after.items():
        grew = count - before.get(key, (0, ""))[0]
        if grew > 0:
            hits += grew
            result.signatures.setdefault(key, title)
            if key not in before:
                result.new.setdefault(key, title)
    result.findings = max(result.findings, hits)


def fuzz(name: str, *, engine: str = "atheris", max_time: float | None = 60.0, runs: int | None = None,
         jobs: int = 1, corpus: Path | None = None, crashers: Path = Path("crashers"),
         corpora: Path = Path("corpora"), workdir: Path = Path("runs"), seed: int | None = None,
         libfuzzer_args: Sequence[str] = (), progress: Callable[[str], None] | None = None,
         stop_on_new: bool = False, on_finding: OnFinding | None = None,
         stop: threading.Event | None = None, warn_flat: bool = True, log_tag: str = "") -> FuzzResult:
    """Fuzz target `name`; see the module docstring. `stop_on_new` ends the campaign at the first
    new signature (a PR-style run); `on_finding` is called once per new signature as soon as a job
    reports it (default: a line on `progress`); setting `stop` ends the campaign (its results are
    kept). SIGINT and SIGTERM end it the same way when it runs in the main thread. `log_tag` goes
    into the names of the jobs' logs and stats files (a scheduled job keeps every share's log)."""
    target = load(name)
    seed = seed if seed is not None else int(time.time()) & 0x7FFFFFFF
    seeds_dir = corpora / name
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    if on_finding is None and progress is not None:
        def on_finding(t: str, key: str, title: str, folder: Path) -> None:
            progress(f"  NEW {t}: {title}  -> {folder}")
    stop = stop or threading.Event()
    streamed: set[str] = set()

    def stream(new: dict[str, str]) -> None:
        for key, title in new.items():
            if key not in streamed:
                streamed.add(key)
                if on_finding is not None:
                    on_finding(name, key, title, Path(crashers) / name / key)
    before = store_counts(crashers, name)
    with signals_stop(stop):
        if engine == "hypothesis":
            result = _hypothesis(target, max_time, runs, CrashStore(crashers),
                                 [seeds_dir] + ([corpus] if corpus else []), seed, progress, stop_on_new, stop,
                                 stream)
        else:
            result = _atheris(target, max_time=max_time, runs=runs, jobs=jobs, corpus=corpus, crashers=crashers,
                              seeds_dir=seeds_dir, workdir=workdir, seed=seed, libfuzzer_args=libfuzzer_args,
                              progress=progress, stop_on_new=stop_on_new, stream=stream, stop=stop,
                              log_tag=log_tag)
    reconcile(result, before, store_counts(crashers, name))
    result.runs_budget = runs
    stream(result.new)                       # what a job recorded but could not report
    if progress is not None and warn_flat and (w := flat_warning(result)):
        progress("  " + w)
    for e in result.errors:
        if progress is not None:
            progress(f"  WARNING {name}: {e.splitlines()[0]}")
    return result


class signals_stop:
    """In the main thread: SIGINT and SIGTERM set `stop` instead of killing the campaign."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.old: dict[int, Any] = {}

    def __enter__(self) -> "signals_stop":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, lambda *_: self.stop.set())
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


_COV = re.compile(rb"cov: (\d+) ft: (\d+)")
_INITED = re.compile(rb"#(\d+)\s+INITED(?: cov: (\d+) ft: (\d+))?")
_UNITS = re.compile(rb"stat::number_of_executed_units: (\d+)")
_PULSE = re.compile(rb"^#(\d+)\s", re.M)


@dataclass
class LogInfo:
    """What a libFuzzer log says about one job."""

    inited: int = 0                         # executions when the corpus was loaded
    cov_start: int | None = None
    ft_start: int | None = None
    cov_end: int | None = None
    ft_end: int | None = None
    execs: int = 0                          # executed units: the final stat, else the last '#N' line
    python_crash: str = ""                  # an uncaught Python exception, if atheris reported one


def parse_log(path: Path) -> LogInfo:
    info = LogInfo()
    try:
        text = Path(path).read_bytes()
    except OSError:
        return info
    m = _INITED.search(text)
    if m:
        info.inited = int(m.group(1))
        if m.group(2):
            info.cov_start, info.ft_start = int(m.group(2)), int(m.group(3))
            after = _COV.findall(text, m.end())
            info.cov_end = max([info.cov_start] + [int(c) for c, _ in after])
            info.ft_end = max([info.ft_start] + [int(f) for _, f in after])
    units = _UNITS.search(text)
    pulses = _PULSE.findall(text)
    info.execs = int(units.group(1)) if units else (int(pulses[-1]) if pulses else 0)
    at = text.find(b"Uncaught Python exception")
    if at >= 0:
        info.python_crash = text[at:at + 1500].decode(errors="replace")
    return info


def _atheris(target: Target, *, max_time: float | None, runs: int | None, jobs: int, corpus: Path | None,
             crashers: Path, seeds_dir: Path, workdir: Path, seed: int, libfuzzer_args: Sequence[str],
             progress: Callable[[str], None] | None, stop_on_new: bool, stream: Callable[[dict[str, str]], None],
             stop: threading.Event, log_tag: str = "") -> FuzzResult:
    name = target.name
    run_dir = workdir / name
    work_corpus = corpus or (run_dir / "corpus")
    work_corpus.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    series: list[dict[str, Any]] = []
    started = time.monotonic()
    jobs = max(1, jobs)
    for j in range(jobs):
        stats = run_dir / f"stats-{log_tag}{j}.json"
        stats.unlink(missing_ok=True)
        log = run_dir / f"fuzz-{log_tag}{j}.log"
        flags = [f"-max_len={target.max_len}", f"-timeout={max(5, int(target.timeout_s * 5))}",
                 "-rss_limit_mb=4096", "-print_final_stats=1", f"-artifact_prefix={run_dir}/"]
        if max_time is not None:
            flags.append(f"-max_total_time={max(1, int(max_time))}")
        if runs is not None:                       # the campaign's runs, split over its jobs
            flags.append(f"-runs={max(1, runs // jobs + (j < runs % jobs))}")
        dirs = [str(work_corpus)] + ([str(seeds_dir)] if seeds_dir.is_dir() else [])
        cmd = [sys.executable, "-m", "harness.engine.atheris_main", "--target", name,
               "--crashers", str(crashers), "--stats", str(stats), "--seed", str(seed + j),
               *flags, *libfuzzer_args, *dirs]
        env = dict(os.environ, FAMFS_FUZZ_RUN_DIR=str(run_dir.resolve()))
        with open(log, "w") as out:
            procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                           preexec_fn=die_with_parent), stats, log))
    interrupted = False
    found = False
    last_line = last_sample = started
    while any(p.poll() is None for p, _, _ in procs):
        stop.wait(0.25)
        now = time.monotonic()
        stats_now = [_read(s) for _, s, _ in procs]
        for st in stats_now:
            stream(st.get("new_signatures") or {})
            found = found or bool(st.get("new_signatures"))
        if stop.is_set() or (stop_on_new and found):
            interrupted = stop.is_set()
            _end(procs)
            break
        if now - last_sample >= 1.0:
            last_sample = now
            series.append(_sample(now - started, stats_now, work_corpus, [lg for _, _, lg in procs]))
        if progress and now - last_line >= 5.0:
            last_line = now
            progress(_line(name, started, stats_now, max_time, corpus=series[-1]["corpus"] if series else None))
    result = FuzzResult(name, "atheris", seconds=time.monotonic() - started, interrupted=interrupted)
    final = [_read(s) for _, s, _ in procs]
    for st in final:
        stream(st.get("new_signatures") or {})
    series.append(_sample(result.seconds, final, work_corpus, [lg for _, _, lg in procs]))
    result.series = series
    for (p, stats, log), st in zip(procs, final):
        info = parse_log(log)
        if info.execs > st.get("execs", 0):        # the job ended before its last counters landed
            st = {**st, "execs": info.execs}
        result.add(st)
        result.logs.append(str(log))
        result.corpus_execs += info.inited
        if info.ft_start is not None:
            result.cov_start = info.cov_start if result.cov_start is None else min(result.cov_start, info.cov_start)
            result.ft_start = info.ft_start if result.ft_start is None else min(result.ft_start, info.ft_start)
            result.cov_end = max(result.cov_end or 0, info.cov_end or 0)
            result.ft_end = max(result.ft_end or 0, info.ft_end or 0)
        if p.returncode not in (0, None, -signal.SIGTERM) or info.python_crash:
            why = info.python_crash or log.read_text(errors="replace")[-1500:]
            result.errors.append(f"job {log.stem} ended with exit {p.returncode}; see {log}\n{why}")
    if result.errors and not result.findings and result.execs <= len(procs):
        first = result.errors[0].splitlines()
        why = first[2] if len(first) > 2 and "Uncaught Python exception" in first[1] else first[0]
        raise EngineDied(f"{name}: every job died at its first input: {why} (see {procs[0][2]})")
    return result


def _end(procs: list[tuple[subprocess.Popen[bytes], Path, Path]], grace: float = 10.0) -> None:
    """SIGTERM every job (each writes its counters and exits), SIGKILL what is left after `grace`."""
    for p, _, _ in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p, _, _ in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
    unjustified = sum(int(s.get("lookups_unjustified") or 0) for s in stats)
    internal = sum(int(s.get("internal_errors") or 0) for s in stats)
    b = f"/{budget:.0f}" if budget else ""
    c = f"  corpus {corpus}" if corpus is not None else ""
    extra = (f"  {unjustified} unjustified  {internal} internal errors"
             if any(k in s for s in stats for k in ("lookups_unjustified", "internal_errors")) else "")
    return (f"  {name}: {el:5.0f}{b} s  {execs} execs  {execs / max(el, 1e-9):,.0f}/s{c}  {lookups} lookups  "
            f"{crashes} signatures{extra}")


class _Stop(BaseException):
    """Ends a Hypothesis campaign at its time or run budget (not a test failure)."""


def _hypothesis(target: Target, max_time: float | None, runs: int | None, store: CrashStore,
                dirs: list[Path], seed: int, progress: Callable[[str], None] | None,
                stop_on_new: bool = False, stop: threading.Event | None = None,
                stream: Callable[[dict[str, str]], None] = lambda new: None) -> FuzzResult:
    from hypothesis import HealthCheck, given, settings, strategies as st
    stop = stop or threading.Event()
    runner = CaseRunner(target, store, seed=seed, engine="hypothesis")
    deadline = time.monotonic() + (max_time if max_time is not None else 1e12)
    budget = runs if runs is not None else 1 << 60
    interrupted = False

    def over() -> bool:
        return (time.monotonic() >= deadline or runner.stats.execs >= budget or stop.is_set()
                or (stop_on_new and bool(runner.stats.new)))
    try:
        for data in corpus_inputs(dirs):             # like libFuzzer: the whole corpus, whatever the budget
            if runner.run_one(data) is not None:
                stream(runner.stats.new)
            if stop.is_set():
                raise _Stop()
        strategy = target.strategy if target.strategy is not None else st.binary(max_size=min(target.max_len, 4096))
        last = [time.monotonic()]

        @settings(max_examples=1 << 30, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[__import__("hypothesis").Phase.generate])
        @given(strategy)
        def one(data: bytes) -> None:
            if over():
                raise _Stop()
            if runner.run_one(data) is not None:
                stream(runner.stats.new)
            now = time.monotonic()
            if progress and now - last[0] >= 5:
                last[0] = now
                progress(_line(target.name, runner.stats.started, [runner.stats.as_dict()], max_time))
            if over():
                raise _Stop()

        if not over():
            one()
    except _Stop:
        pass
    except KeyboardInterrupt:
        interrupted = True
    interrupted = interrupted or stop.is_set()
    result = FuzzResult(target.name, "hypothesis", seconds=runner.stats.seconds, interrupted=interrupted)
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
