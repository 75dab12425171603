"""Fuzz campaigns: run one target under Atheris (libFuzzer, in child processes) or Hypothesis.

`fuzz()` keeps going after findings (each is a crash folder), shows progress, streams a line per
new signature as it appears, and returns a `FuzzResult` with executions, exec/s, lookups checked,
signatures and the libFuzzer coverage at the start (after loading the corpus, "INITED") and at
the end. Atheris jobs run as `python -m harness.engine.atheris_main` children, each writing its
counters to a stats file; their libFuzzer output goes to a log in the run directory. The
Hypothesis engine runs in this process: inputs are drawn from the target's strategy (bytes),
after the corpus files were run. `Campaign` is one target's Atheris jobs; `fuzz` runs one to its
end, the scheduler (`slots`) runs it in shares, paused in between.

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

from harness.engine.crashstore import CrashStore
from harness.engine.errors import CampaignStop, HarnessError
from harness.engine.registry import Target, load
from harness.engine.runner import CaseRunner, Stats

ENGINES = ("atheris", "hypothesis")
PARALLEL = ("ours", "libfuzzer")      # --jobs N: N jobs of ours, or one libFuzzer -fork=N (docs/benchmarks.md)
DEFAULT_PARALLEL = "ours"
COUNTERS = ("lookups_ok", "lookups_justified", "lookups_unjustified", "internal_errors")

OnFinding = Callable[[str, str, str, Path], None]          # (target, key, title, crash folder)


def _least(a: int | None, b: int | None) -> int | None:
    """The smaller of two counters, either of which may be unknown (None)."""
    return b if a is None else a if b is None else min(a, b)


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
    found_at: dict[str, int] = field(default_factory=dict)    # Hypothesis: execution that first hit each key
    shrunk: dict[str, int] = field(default_factory=dict)      # Hypothesis: size of each key's shrunk input
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
                "interrupted": self.interrupted, "errors": self.errors, "series": self.series,
                "found_at": self.found_at, "shrunk": self.shrunk}

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


def unloaded(r: FuzzResult) -> bool:
    """An Atheris campaign that ran inputs but never got through its corpus (no INITED)."""
    return (r.engine == "atheris" and r.execs > 0 and r.corpus_execs == 0 and r.ft_start is None
            and not r.findings)


def flat_warning(r: FuzzResult, shares: int = 1) -> str | None:
    """The warning line for a target whose coverage never grew past its corpus's (or that never
    got through its corpus), or None."""
    over = f" in {shares} shares" if shares > 1 else ""
    if unloaded(r):
        return (f"WARNING {r.target}: never got through its corpus ({r.execs:,} inputs in {r.seconds:.0f} s"
                f"{over}): coverage cannot grow, a harness problem")
    if r.coverage_grew is not False:
        return None
    why = flat_why(r.target)
    return (f"WARNING {r.target}: coverage never grew past its corpus (cov {r.cov_start} ft {r.ft_start} after "
            f"loading it, cov {r.cov_end} ft {r.ft_end} at the end{over}, {r.execs:,} execs): "
            + (f"known, {why}" if why else "a harness problem"))


def flat_why(target: str) -> str:
    """The target's own account of why its coverage may stay flat (`Target.flat_why`), or ''."""
    try:
        return load(target).flat_why
    except Exception:  # noqa: BLE001 - a name that is not a target (tests' fakes): no account
        return ""


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
         stop: threading.Event | None = None, warn_flat: bool = True, log_tag: str = "",
         hypothesis_db: str | None = None, hypothesis_db_read_only: bool | None = None,
         parallel: str = DEFAULT_PARALLEL) -> FuzzResult:
    """Fuzz target `name`; see the module docstring. `stop_on_new` ends the campaign at the first
    new signature (a PR-style run); `on_finding` is called once per new signature as soon as a job
    reports it (default: a line on `progress`); setting `stop` ends the campaign (its results are
    kept). SIGINT and SIGTERM end it the same way when it runs in the main thread. `log_tag` goes
    into the names of the jobs' logs and stats files. `hypothesis_db` and `hypothesis_db_read_only`
    choose the Hypothesis engine's example database (`engine.hypodb.open_database`); `parallel`
    how Atheris runs `jobs` > 1 (`Campaign`)."""
    target = load(name)
    seed = seed if seed is not None else int(time.time()) & 0x7FFFFFFF
    seeds_dir = corpora / name
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    if on_finding is None and progress is not None:
        def on_finding(t: str, key: str, title: str, folder: Path) -> None:
            progress(f"  NEW {t}: {title}  -> {folder}")
    stop = stop or threading.Event()
    with signals_stop(stop):
        if engine == "hypothesis":
            streamed: set[str] = set()

            def stream(new: dict[str, str]) -> None:
                for key, title in new.items():
                    if key not in streamed:
                        streamed.add(key)
                        if on_finding is not None:
                            on_finding(name, key, title, Path(crashers) / name / key)
            from harness.engine import hypodb
            db = hypodb.open_database(hypothesis_db, name, Path(workdir) / name, read_only=hypothesis_db_read_only)
            before = store_counts(crashers, name)
            try:
                result = _hypothesis(target, max_time, runs, CrashStore(crashers),
                                     [seeds_dir] + ([corpus] if corpus else []), seed, progress, stop_on_new, stop,
                                     stream, database=db)
            finally:
                hypodb.flush(db)
            reconcile(result, before, store_counts(crashers, name))
            result.runs_budget = runs
            stream(result.new)
        else:
            c = Campaign(name, max_time=max_time, runs=runs, jobs=jobs, corpus=corpus, crashers=crashers,
                         corpora=corpora, workdir=workdir, seed=seed, libfuzzer_args=libfuzzer_args,
                         progress=progress, stop_on_new=stop_on_new, on_finding=on_finding, log_tag=log_tag,
                         parallel=parallel)
            c.run(None, stop=stop)
            result = c.finish()
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
_PULSE = re.compile(rb"^#(\d+)\s")
_FORK = re.compile(rb"^#(\d+): cov: (\d+) ft: (\d+) corp: (\d+)")       # a -fork parent's line per child
_FORK_SEEDS = re.compile(rb"^INFO: -fork=\d+: (\d+) seed inputs")


@dataclass
class LogInfo:
    """What a libFuzzer log says about one job."""

    inited: int = 0                         # executions when the corpus was loaded (0: not yet)
    cov_start: int | None = None            # cov/ft at INITED
    ft_start: int | None = None
    cov_end: int | None = None              # the highest cov/ft since
    ft_end: int | None = None
    execs: int = 0                          # executed units: the final stat, else the last '#N' line
    python_crash: str = ""                  # an uncaught Python exception, if atheris reported one
    started: bool = False                   # libFuzzer is running (the child's imports are done)


class LogTail:
    """Reads a libFuzzer log as it grows (only the new bytes each time)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.pos = 0
        self.rest = b""
        self.info = LogInfo()
        self.units: int | None = None
        self.crash_at: int | None = None

    def update(self) -> LogInfo:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                new = f.read()
        except OSError:
            return self.info
        if self.crash_at is None and b"Uncaught Python exception" in self.rest + new:
            self.crash_at = self.pos - len(self.rest) + (self.rest + new).find(b"Uncaught Python exception")
        self.pos += len(new)
        lines = (self.rest + new).split(b"\n")
        self.rest = lines.pop()
        info = self.info
        for line in lines:
            if not info.started and line.startswith(b"INFO: Seed:"):
                info.started = True
            m = _PULSE.match(line)
            if m:
                info.execs = max(info.execs, int(m.group(1)))
            if fk := _FORK.match(line):                # fork mode: no INITED; coverage after each child
                info.execs = max(info.execs, int(fk.group(1)))
                info.cov_end = max(info.cov_end or 0, int(fk.group(2)))
                info.ft_end = max(info.ft_end or 0, int(fk.group(3)))
                continue
            if not info.inited and (k := _FORK_SEEDS.match(line)):
                info.inited = int(k.group(1)) or 1
                continue
            if not info.inited and (i := _INITED.search(line)):
                info.inited = int(i.group(1)) or 1
                if i.group(2):
                    info.cov_start = info.cov_end = int(i.group(2))
                    info.ft_start = info.ft_end = int(i.group(3))
                continue
            if info.inited and info.ft_end is not None and (c := _COV.search(line)):
                info.cov_end = max(info.cov_end or 0, int(c.group(1)))
                info.ft_end = max(info.ft_end, int(c.group(2)))
            if u := _UNITS.match(line):
                self.units = int(u.group(1))
        if self.units is not None:
            info.execs = self.units
        return info

    def python_crash(self) -> str:
        if self.crash_at is None:
            return ""
        with open(self.path, "rb") as f:
            f.seek(self.crash_at)
            return f.read(1500).decode(errors="replace")


def parse_log(path: Path) -> LogInfo:
    tail = LogTail(path)
    info = tail.update()
    info.python_crash = tail.python_crash()
    return info


def _stopped(pid: int) -> bool:
    """Is process `pid` stopped (SIGSTOP) or gone?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t", "Z", "X")


def _child_setup() -> None:
    """In a job before exec: die with the parent; ignore SIGUSR1 (the pause request) until the
    child installs its handler, so an early pause cannot kill it."""
    die_with_parent()
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


class Campaign:
    """One target's Atheris jobs, started once and run in shares.

    `run` lets the jobs fuzz (until they end, or for `seconds`, counted from when their corpus is
    loaded if `after_inited`) and returns what that share did; `pause` stops them between two
    inputs (SIGUSR1: the child stops itself after its current case, so no case's timer runs
    while it is stopped) keeping the loaded corpus and coverage for the next share; `finish`
    ends them and returns the whole campaign, reconciled with the crash store.

    `parallel="libfuzzer"` with jobs > 1 starts one process with libFuzzer's `-fork=jobs` instead:
    libFuzzer runs the children (each our atheris_main, re-run from the command line it was given,
    so findings land in the crash store with our signatures) and merges their corpora into the
    working corpus itself. Each child writes its counters to its own stats file (`{pid}` in the
    path), which `stats` sums; the parent and its children share a process group, ended together.
    A campaign run in shares (the scheduler) uses our jobs only: fork mode cannot pause."""

    def __init__(self, name: str, *, max_time: float | None = None, runs: int | None = None, jobs: int = 1,
                 corpus: Path | None = None, crashers: Path = Path("crashers"), corpora: Path = Path("corpora"),
                 workdir: Path = Path("runs"), seed: int | None = None, libfuzzer_args: Sequence[str] = (),
                 progress: Callable[[str], None] | None = None, stop_on_new: bool = False,
                 on_finding: OnFinding | None = None, log_tag: str = "", clock: float | None = None,
                 parallel: str = DEFAULT_PARALLEL, spawner: Any = None):
        if parallel not in PARALLEL:
            raise HarnessError(f"unknown --parallel {parallel!r}; choose one of {', '.join(PARALLEL)}")
        self.target = load(name)
        self.spawner = spawner                         # a zygote.Zygote: jobs forked, not new interpreters
        self.name = name
        self.seed = seed if seed is not None else int(time.time()) & 0x7FFFFFFF
        self.max_time, self.runs, self.jobs = max_time, runs, max(1, jobs)
        self.fork = parallel == "libfuzzer" and self.jobs > 1
        self.crashers, self.seeds_dir = Path(crashers), Path(corpora) / name
        self.run_dir = Path(workdir) / name
        self.work_corpus = Path(corpus) if corpus else self.run_dir / "corpus"
        self.libfuzzer_args, self.progress, self.stop_on_new = list(libfuzzer_args), progress, stop_on_new
        self.on_finding, self.log_tag, self.clock = on_finding, log_tag, clock
        self.procs: list[tuple[Any, Path, Path]] = []      # (subprocess.Popen or zygote.Job, stats, log)
        self.tails: list[LogTail] = []
        self.series: list[dict[str, Any]] = []
        self.streamed: set[str] = set()
        self.running_s = 0.0
        self.interrupted = False
        self.paused = False
        self.before: dict[str, tuple[int, str]] = {}

    # -- the jobs -------------------------------------------------------------------------------

    def start(self) -> None:
        self.before = store_counts(self.crashers, self.name)
        self.work_corpus.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        if self.clock is None:
            self.clock = self.started
        t = self.target
        for j in range(1 if self.fork else self.jobs):
            stats = self.run_dir / f"stats-{self.log_tag}{j}{'-{pid}' if self.fork else ''}.json"
            for old in ([stats] if not self.fork else self.run_dir.glob(f"stats-{self.log_tag}{j}-*.json")):
                old.unlink(missing_ok=True)
            log = self.run_dir / f"fuzz-{self.log_tag}{j}.log"
            flags = [f"-max_len={t.max_len}", f"-timeout={max(5, int(t.timeout_s * 5))}",
                     "-rss_limit_mb=4096", "-print_final_stats=1", f"-artifact_prefix={self.run_dir}/"]
            if self.max_time is not None:
                flags.append(f"-max_total_time={max(1, int(self.max_time))}")
            else:                                      # run in shares: a paused input is not slow
                flags.append("-report_slow_units=1000000")
            if t.value_profile and not any(a.startswith("-use_value_profile") for a in self.libfuzzer_args):
                flags.append("-use_value_profile=1")
            if self.fork:                              # libFuzzer's children, its merge, the whole budget
                flags += [f"-fork={self.jobs}"] + ([f"-runs={self.runs}"] if self.runs is not None else [])
            elif self.runs is not None:                # the campaign's runs, split over its jobs
                flags.append(f"-runs={max(1, self.runs // self.jobs + (j < self.runs % self.jobs))}")
            dirs = [str(self.work_corpus)] + ([str(self.seeds_dir)] if self.seeds_dir.is_dir() else [])
            cmd = [sys.executable, "-m", "harness.engine.atheris_main", "--target", self.name,
                   "--crashers", str(self.crashers), "--stats", str(stats), "--seed", str(self.seed + j),
                   *flags, *self.libfuzzer_args, *dirs]
            extra = {"FAMFS_FUZZ_RUN_DIR": str(self.run_dir.resolve())}
            job = None
            if self.spawner is not None and not self.fork and self.spawner.serves(self.name):
                try:
                    job = self.spawner.spawn(cmd[3:], log, extra)
                except HarnessError:                   # the zygote is gone: a new interpreter then
                    job = None
            if job is not None:
                self.procs.append((job, stats, log))
            else:
                with open(log, "w") as out:
                    self.procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                                        env=dict(os.environ, **extra),
                                                        preexec_fn=_fork_setup if self.fork else _child_setup),
                                       stats, log))
            self.tails.append(LogTail(log))

    def alive(self) -> bool:
        return any(p.poll() is None for p, _, _ in self.procs)

    def stats(self) -> list[dict[str, Any]]:
        if self.fork:                                   # every process of the fork: summed
            return [_summed(_read(f) for f in s.parent.glob(s.name.replace("{pid}", "*"))) for _, s, _ in self.procs]
        return [_read(s) for _, s, _ in self.procs]

    def inited(self) -> bool:
        """Has every job run its corpus (or ended)?"""
        return all(t.update().inited or p.poll() is not None
                   for t, (p, _, _) in zip(self.tails, self.procs, strict=True))

    def running(self) -> bool:
        """Has every job started fuzzing (interpreter, imports and instrumentation done) or ended?"""
        return all(t.update().started or p.poll() is not None
                   for t, (p, _, _) in zip(self.tails, self.procs, strict=True))

    def features(self) -> int | None:
        """libFuzzer features past the corpus so far, summed over the jobs (None before INITED)."""
        infos = [t.update() for t in self.tails]
        known = [i.ft_end for i in infos if i.ft_end is not None]
        return sum(known) if known else None

    def stream(self, new: dict[str, str]) -> None:
        for key, title in new.items():
            if key not in self.streamed:
                self.streamed.add(key)
                if self.on_finding is not None:
                    self.on_finding(self.name, key, title, self.crashers / self.name / key)

    def pause(self) -> None:
        """Stop every job between two inputs. Never by force: a job stopped inside a case would
        find its case timer expired when it goes on (a false timeout). The request is repeated
        (a job still starting ignores it) and given up after a grace; such a job stops itself
        at its next input, or runs on until its next share."""
        if self.fork:
            raise HarnessError("a libFuzzer -fork campaign cannot pause: run it in one share (--parallel ours)")
        live = [p for p, _, _ in self.procs if p.poll() is None]
        deadline = time.monotonic() + max(10.0, self.target.timeout_s * 5 + 5)
        for p in live:
            asked = 0.0
            while not _stopped(p.pid) and time.monotonic() < deadline:
                if time.monotonic() - asked >= 1.0:
                    p.send_signal(signal.SIGUSR1)
                    asked = time.monotonic()
                time.sleep(0.02)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            for p, _, _ in self.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGCONT)
            self.paused = False

    # -- a share ----------------------------------------------------------------------------------

    def run(self, seconds: float | None = None, *, stop: threading.Event | None = None,
            after_inited: bool = False, cap: float | None = None, budget: float | None = None,
            until: float | None = None) -> FuzzResult:
        """Let the jobs fuzz; returns what they did in this share (deltas). With `seconds`, the
        share ends `seconds` after it began (after the corpus was run, if `after_inited`) or `cap`
        seconds after the jobs started fuzzing, whichever comes first; never past `until` (a
        time.monotonic() value: the job's deadline)."""
        stop = stop or threading.Event()
        if not self.procs:
            self.start()
        self.resume()
        t0 = time.monotonic()
        begin = self.stats()
        ft0 = self.features()
        inited_at = t0 if not after_inited or self.inited() else None
        running_at = t0 if self.running() else None      # `cap` counts from here: not the child's start
        found = False
        last_line = last_sample = t0
        share_series: list[dict[str, Any]] = []
        while self.alive():
            stop.wait(0.25)
            now = time.monotonic()
            stats_now = self.stats()
            for st in stats_now:
                self.stream(st.get("new_signatures") or {})
                found = found or bool(st.get("new_signatures"))
            if stop.is_set():
                self.interrupted = True
                break
            if self.stop_on_new and found:
                break
            if inited_at is None and self.inited():
                inited_at = now
            if running_at is None and self.running():
                running_at = now
            if seconds is not None and ((inited_at is not None and now - inited_at >= seconds)
                                        or (cap is not None and running_at is not None and now - running_at >= cap)):
                break
            if until is not None and now >= until:
                break
            if self.fork and self.max_time is not None and now - self.started >= self.max_time:
                break                                 # a -fork parent waits for its children past its time
            if now - last_sample >= 1.0:
                last_sample = now
                share_series.append(self._sample(now, stats_now))
            if self.progress and now - last_line >= 5.0:
                last_line = now
                el = self.running_s + now - t0
                self.progress(_line(self.name, el, stats_now, budget if budget is not None else self.max_time,
                                    corpus=share_series[-1]["corpus"] if share_series else None))
        end_t = time.monotonic()
        self.running_s += end_t - t0
        end = self.stats()
        share_series.append(self._sample(end_t, end))
        self.series += share_series
        share = FuzzResult(self.name, "atheris", seconds=end_t - t0, interrupted=self.interrupted)
        share.series = share_series
        for key in ("execs", "lookups_checked", "findings", *COUNTERS):
            total = sum(int(s.get(key) or 0) for s in end) - sum(int(s.get(key) or 0) for s in begin)
            share.add({key: total})
        had = {k for s in begin for k in (s.get("new_signatures") or {})}
        for s in end:
            share.signatures.update(s.get("signatures") or {})
            share.new.update({k: v for k, v in (s.get("new_signatures") or {}).items() if k not in had})
        infos = [t.update() for t in self.tails]
        if any(i.ft_start is not None for i in infos):
            share.ft_start = ft0 if ft0 is not None else sum(i.ft_start or 0 for i in infos)
            share.ft_end = self.features()
            share.cov_start = sum(i.cov_start or 0 for i in infos)
            share.cov_end = sum(i.cov_end or 0 for i in infos)
        share.corpus_execs = sum(i.inited for i in infos)
        return share

    def _sample(self, now: float, stats: list[dict[str, Any]]) -> dict[str, Any]:
        return _sample(now - (self.clock or now), stats, self.work_corpus, [lg for _, _, lg in self.procs])

    # -- the end ----------------------------------------------------------------------------------

    def end(self) -> None:
        """Ask every job to end (SIGTERM; SIGCONT for a paused one): each writes its counters. In
        fork mode the whole process group: the children write theirs; the parent, waiting in
        libFuzzer's C++ loop where no Python signal handler runs, is killed."""
        for p, _, _ in self.procs:
            if self.fork and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                p.kill()
                continue
            if p.poll() is None:
                p.terminate()
                p.send_signal(signal.SIGCONT)
        self.paused = False

    def finish(self, grace: float = 10.0) -> FuzzResult:
        """End the jobs and return the whole campaign, reconciled with the crash store and logs."""
        result = FuzzResult(self.name, "atheris", seconds=self.running_s, interrupted=self.interrupted)
        if not self.procs:
            return result
        self.end()
        deadline = time.monotonic() + grace
        for p, _, _ in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            while self.fork and _group_alive(p.pid) and time.monotonic() < deadline:
                time.sleep(0.05)                         # the children write their last counters
            if self.fork and _group_alive(p.pid):
                os.killpg(p.pid, signal.SIGKILL)
        final = self.stats()
        for st in final:
            self.stream(st.get("new_signatures") or {})
        result.series = self.series
        for (p, _, log), st, tail in zip(self.procs, final, self.tails, strict=True):
            info = tail.update()
            if info.execs > st.get("execs", 0):        # the job ended before its last counters landed
                st = {**st, "execs": info.execs}
            result.add(st)
            result.logs.append(str(log))
            result.corpus_execs += info.inited
            if info.ft_start is not None:
                result.cov_start = _least(result.cov_start, info.cov_start)
                result.ft_start = _least(result.ft_start, info.ft_start)
                result.cov_end = max(result.cov_end or 0, info.cov_end or 0)
                result.ft_end = max(result.ft_end or 0, info.ft_end or 0)
            elif info.ft_end is not None:               # fork mode: no INITED line, the children's coverage
                result.cov_end = max(result.cov_end or 0, info.cov_end or 0)
                result.ft_end = max(result.ft_end or 0, info.ft_end)
            crash = tail.python_crash()
            if p.returncode not in (0, None, -signal.SIGTERM, *((-signal.SIGKILL,) if self.fork else ())) or crash:
                why = crash or log.read_text(errors="replace")[-1500:]
                result.errors.append(f"job {log.stem} ended with exit {p.returncode}; see {log}\n{why}")
        reconcile(result, self.before, store_counts(self.crashers, self.name))
        result.runs_budget = self.runs
        self.stream(result.new)                      # what a job recorded but could not report
        if result.errors and not result.findings and result.execs <= len(self.procs):
            first = result.errors[0].splitlines()
            why = first[2] if len(first) > 2 and "Uncaught Python exception" in first[1] else first[0]
            raise EngineDied(f"{self.name}: every job died at its first input: {why} (see {self.procs[0][2]})")
        return result


def _fork_setup() -> None:
    """A libFuzzer -fork parent: as a job, in a process group of its own (its children join it)."""
    _child_setup()
    os.setpgid(0, 0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _summed(docs: Any) -> dict[str, Any]:
    """The counters of several processes of one job (libFuzzer -fork's children) as one."""
    out: dict[str, Any] = {}
    for d in docs:
        for k, v in d.items():
            if isinstance(v, dict):
                out.setdefault(k, {}).update(v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seconds", "execs_per_s"):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    return out


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


def _line(name: str, elapsed: float, stats: list[dict[str, Any]], budget: float | None,
          corpus: int | None = None) -> str:
    el = elapsed
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


def _only_findings(e: BaseException) -> bool:
    """Is `e` one finding, or a group (several bugs, a flaky one) of findings only?"""
    from harness.engine.signature import Finding
    if isinstance(e, BaseExceptionGroup):
        return all(_only_findings(x) for x in e.exceptions)
    return isinstance(e, Finding)


def _hypothesis(target: Target, max_time: float | None, runs: int | None, store: CrashStore,
                dirs: list[Path], seed: int, progress: Callable[[str], None] | None,
                stop_on_new: bool = False, stop: threading.Event | None = None,
                stream: Callable[[dict[str, str]], None] = lambda new: None, database: Any = None) -> FuzzResult:
    """The Hypothesis engine: the corpus first, then rounds of Hypothesis's reuse (the first round
    only: the example database replayed), generate and shrink phases. Every case goes through
    the runner (counted, saved to the crash store); a finding whose signature this campaign has
    not settled yet is raised to Hypothesis as an exception of its own type (one per signature,
    so Hypothesis shrinks each bug apart), which shrinks it and saves it in `database`. The
    round's last failing input of each signature (after a full shrink: Hypothesis's final replay
    of the shrunk example) becomes the crash folder's `minimized`; the signature is then settled
    (no longer raised) and the next round searches on. Later rounds leave out the reuse phase:
    it would delete from the database every example that no longer raises."""
    import hypothesis.errors
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st
    from hypothesis.reporting import with_reporter

    from harness.engine.signature import finding_class
    stop = stop or threading.Event()
    runner = CaseRunner(target, store, seed=seed, engine="hypothesis")
    deadline = time.monotonic() + (max_time if max_time is not None else 1e12)
    budget = runs if runs is not None else 1 << 60
    interrupted = False
    found_at: dict[str, int] = {}             # (hypothesis.seed would turn the database off: no @seed)
    settled: set[str] = set()
    failing: dict[str, bytes] = {}            # this round: each unsettled signature's last failing input
    shrunk: dict[str, int] = {}

    def over() -> bool:
        return time.monotonic() >= deadline or runner.stats.execs >= budget or stop.is_set()

    def run(data: bytes) -> Any:
        sig = runner.run_one(data)
        if sig is not None:
            found_at.setdefault(sig.key, runner.stats.execs)
            stream(runner.stats.new)
        return sig

    def settle() -> None:
        for key, data in failing.items():
            folder = store.root / target.name / key
            kept = folder / "minimized"               # a smaller one (minimize, an earlier run) stays
            if (folder / "crash.json").exists() and (
                    not kept.exists() or (len(data), data) < (len(old := kept.read_bytes()), old)):
                store.set_minimized(target.name, key, data)
            shrunk[key] = len(data)
            settled.add(key)
        failing.clear()
    try:
        for data in corpus_inputs(dirs):             # like libFuzzer: the whole corpus, whatever the budget
            run(data)
            if stop.is_set():
                raise CampaignStop()
        settled.update(runner.stats.signatures)      # what the corpus found needs no search
        strategy = target.strategy if target.strategy is not None else st.binary(max_size=min(target.max_len, 4096))
        last = [time.monotonic()]
        phases = [Phase.reuse, Phase.generate, Phase.shrink]
        while not over() and not (stop_on_new and runner.stats.new):
            @settings(max_examples=1 << 30, deadline=None, database=database, derandomize=False,
                      suppress_health_check=list(HealthCheck), phases=phases, report_multiple_bugs=True,
                      verbosity=Verbosity.quiet, print_blob=False)
            @given(strategy)
            def one(data: bytes) -> None:
                if over():
                    raise CampaignStop()
                sig = run(data)
                now = time.monotonic()
                if progress and now - last[0] >= 5:
                    last[0] = now
                    progress(_line(target.name, runner.stats.seconds, [runner.stats.as_dict()], max_time))
                if sig is not None and sig.key not in settled:
                    failing[sig.key] = bytes(data)
                    raise finding_class(sig)(sig.title)

            try:
                with with_reporter(lambda *_: None):
                    one()
                break                                # Hypothesis ran out of examples to try
            except Exception as e:                   # noqa: BLE001 - findings end a round; the rest is ours
                if not (_only_findings(e) or isinstance(e, hypothesis.errors.Flaky)):
                    raise
            finally:
                settle()
            phases = [Phase.generate, Phase.shrink]
    except CampaignStop:
        pass
    except KeyboardInterrupt:
        interrupted = True
    interrupted = interrupted or stop.is_set()
    result = FuzzResult(target.name, "hypothesis", seconds=runner.stats.seconds, interrupted=interrupted)
    result.add(runner.stats.as_dict())
    result.found_at = found_at
    result.shrunk = shrunk
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
