"""The nightly run: every target within a budget, then corpus merge, crasher re-checks and reports.

Schedule (`schedule.Schedule`, run by `slots.run_shares`, `jobs` campaigns at a time, default every
core): a sweep gives every target a share first (round 1), then the rest of the budget goes in
shares to the targets whose coverage, corpus or signatures still grew (round 2, an upper-
confidence bandit). A target whose libFuzzer coverage never grew past its corpus's is listed
in the summary and the report as a harness problem (`coverage_flat`). After
fuzzing: each target's corpus is merged (coverage kept, safe against a kill), every recorded
crasher is re-run (3 times) and marked fixed (its input moves to corpora/<target>/regress/) or
still failing, and `report.write` produces summary.json, junit.xml and report.html.

Guards: leftover FUSE mounts and mount daemons under the run directory are cleaned at start and
end; the run refuses to start with less than `min_free_mb` of free disk. Everything a run records
(crash folders, corpus files) is written atomically, so a nightly killed at any point and run
again loses nothing.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.engine.campaign import FuzzResult, default_jobs, flat_warning, flat_why, merge, unloaded
from harness.engine.schedule import Schedule
from harness.engine.slots import ShareRecord, run_shares
from harness.engine.crashers import repro
from harness.engine.crashstore import CrashStore
from harness.engine.errors import HarnessError
from harness.ops.default_job import costs
from harness.engine.registry import default_names


@dataclass
class NightlyResult:
    out: str
    budget: float
    jobs: int
    started: float
    seconds: float = 0.0
    rounds: list[list[FuzzResult]] = field(default_factory=list)
    crashers: list[dict[str, Any]] = field(default_factory=list)
    merges: dict[str, Any] = field(default_factory=dict)
    coverage: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)      # lanes that could not run here, and why
    shares: list[ShareRecord] = field(default_factory=list)
    flat: list[dict[str, Any]] = field(default_factory=list)   # targets whose coverage never grew
    shm_states: dict[str, Any] = field(default_factory=dict)   # per operation: states admitted, pruned, run

    @property
    def results(self) -> list[FuzzResult]:
        return [r for rnd in self.rounds for r in rnd]

    @property
    def new_findings(self) -> int:
        return sum(len(r.new) for r in self.results)


def clean_leftovers(out: Path) -> int:
    """Unmount famfs FUSE mounts below `out` and kill mount daemons serving them."""
    from harness.famfs.fuse import unmount_lazy
    n = 0
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return 0
    root = str(out.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and parts[2].startswith("fuse") and parts[1].startswith(root):
            unmount_lazy(parts[1])
            n += 1
    subprocess.run(["pkill", "-f", f"harness.cli mount .*{root}"], check=False, capture_output=True)
    return n


def nightly(out: Path, *, budget: float = 600.0, jobs: int | None = None, targets: Sequence[str] = (),
            crashers: Path = Path("crashers"), corpora: Path = Path("corpora"), stop_on_new: bool = False,
            min_free_mb: int = 512, progress: Callable[[str], None] | None = None,
            real_dax: float = 0.0, afl_cmds: Sequence[str] = (), afl_seconds: float = 0.0) -> NightlyResult:
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free >> 20
    if free < min_free_mb:
        raise HarnessError(f"only {free} MiB free under {out}; nightly needs {min_free_mb} MiB")
    clean_leftovers(out)
    chosen = list(targets) or default_names()
    jobs = jobs or default_jobs()
    result = NightlyResult(str(out), budget, jobs, time.time())
    start = time.monotonic()
    say = progress or (lambda line: None)
    slots = max(1, min(jobs, len(chosen)))
    schedule = Schedule(chosen, sweep_s=min(60.0, max(3.0, 0.2 * budget * slots / len(chosen))),
                        quantum_s=min(600.0, max(10.0, budget / 10)),
                        costs=costs(out, chosen, corpora))
    done = run_shares(schedule, slots=slots, budget=budget, workdir=out / "work", progress=progress,
                      stop_on_new=stop_on_new, jobs_per_share=max(1, jobs // len(chosen)),
                      crashers=crashers, corpora=corpora)
    result.shares = done.shares
    result.rounds = [[rec.result for rec in result.shares if rec.phase == phase] for phase in ("sweep", "adaptive")]
    for r in done.results.values():
        if w := flat_warning(r, sum(1 for s in result.shares if s.target == r.target)):
            say(w)
            result.flat.append({"target": r.target, "cov_start": r.cov_start, "ft_start": r.ft_start,
                                "cov_end": r.cov_end, "ft_end": r.ft_end, "execs": r.execs,
                                "reason": "never got through its corpus in its shares" if unloaded(r)
                                else flat_why(r.target) or "libFuzzer coverage never grew past what the corpus gave",
                                "known": bool(flat_why(r.target)) and not unloaded(r)})
    if real_dax > 0:                          # the real-DAX lane: one qemu guest, mount_e2e cases
        from harness.realdax.kit import RealdaxError
        from harness.realdax.fuzz import fuzz_real
        try:
            say(f"nightly: mount_e2e on real device-dax for {real_dax:.0f} s")
            result.rounds.append([fuzz_real("mount_e2e", max_time=real_dax, crashers=crashers,
                                            corpora=corpora, say=say)])
        except RealdaxError as e:
            if e.skip_reason is None:
                raise
            result.skipped.append(f"real-DAX lane: {e.skip_reason}")
            say(f"nightly: real-DAX lane skipped: {e.skip_reason}")
    if afl_cmds and afl_seconds > 0:          # the external target's AFL++ lane, one command after another
        from harness.ops.afl import nightly_lane
        lane, skipped = nightly_lane(afl_cmds, afl_seconds, crashers=crashers, workdir=out / "work", say=say)
        if lane:
            result.rounds.append(lane)
        result.skipped += skipped
    for name in chosen:
        try:
            result.merges[name] = {"files": merge(name, corpora, workdir=out / "work")}
        except RuntimeError as e:
            result.merges[name] = {"error": str(e)[:300]}
    result.crashers = recheck(CrashStore(crashers), corpora, say)
    result.coverage = famfs_coverage(out, corpora, chosen)
    if "shm_states" in chosen:
        from harness.cases.shm import corpus_states
        result.shm_states = corpus_states(corpora)
    clean_leftovers(out)
    result.seconds = time.monotonic() - start
    return result


def recheck(store: CrashStore, corpora: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Re-run every recorded crasher; fixed ones move to the regression corpus."""
    out = []
    for rec in store.list():
        if rec.mode == "real-dax":            # found in a qemu guest: re-checked only by the real lane
            say(f"crasher {rec.target}/{rec.key}: real-DAX finding, not re-checked here ({rec.repro})")
            out.append({"target": rec.target, "key": rec.key, "title": rec.title, "count": rec.count,
                        "first_seen": rec.first_seen, "last_seen": rec.last_seen, "mode": rec.mode,
                        "reproduced": rec.reproduced, "status": "real-dax", "repro": rec.repro})
            continue
        r = repro(rec.path, times=3)
        status = "still failing" if r.reproduces else "fixed"
        entry = {"target": rec.target, "key": rec.key, "title": rec.title, "count": rec.count,
                 "first_seen": rec.first_seen, "last_seen": rec.last_seen, "mode": rec.mode,
                 "reproduced": f"{r.k}/{r.n}", "status": status, "repro": rec.repro}
        if not r.reproduces:
            entry["moved_to"] = str(store.move_to_regress(rec.target, rec.key, corpora))
        say(f"crasher {rec.target}/{rec.key}: {status} ({r.k}/{r.n})")
        out.append(entry)
    return out


def famfs_coverage(out: Path, corpora: Path, targets: Sequence[str]) -> dict[str, Any]:
    """Line coverage of harness/famfs (coverage.py) over a replay of the in-process targets'
    corpora; the FUSE targets' daemons run in other processes and are not measured here."""
    import json
    import sys

    from harness.engine.registry import load
    in_process = [t for t in targets if not load(t).uses_fuse]
    data = out / ".coverage"
    cmd = [sys.executable, "-m", "coverage", "run", f"--data-file={data}", "--source=harness.famfs",
           "-m", "harness.cli", "regress", "--all", "--corpora", str(corpora), *in_process]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode not in (0, 1):
        return {"error": (run.stderr or run.stdout)[-500:]}
    report = out / "coverage.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(report)],
                   capture_output=True, text=True)
    try:
        doc = json.loads(report.read_text())
    except (OSError, ValueError):
        return {"error": "coverage json missing"}
    files = {Path(f).as_posix().split("harness/famfs/")[-1]: round(v["summary"]["percent_covered"], 1)
             for f, v in doc["files"].items()}
    return {"total": round(doc["totals"]["percent_covered"], 1), "files": files}
