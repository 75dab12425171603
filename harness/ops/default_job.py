"""The README's main job: a default campaign over every target, mount_e2e's real FUSE mount included.

`--max-time` is the job's wall-clock budget. Every core runs one Atheris campaign at a time
(`slots`, default: every core); `schedule.Schedule` decides what runs next: first a sweep that
gives every target a few seconds past its corpus, then shares of the rest of the budget to the
targets whose coverage, corpus or signatures still grew (an upper-confidence bandit). New
signatures are printed as they appear, with their crash folder. The result is one line per
target, a warning for each target whose coverage never grew past its corpus (a harness problem)
and a JSON summary in the run directory with the schedule (target, slot, start, seconds of every
share). Exit 1 if any target recorded a finding.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.engine.campaign import COUNTERS, FuzzResult, default_jobs, flat_warning, unloaded
from harness.engine.registry import default_names, load
from harness.engine.schedule import Schedule
from harness.engine.slots import ShareRecord, run_shares

SWEEP_S = 2.0


@dataclass
class DefaultRun:
    results: list[FuzzResult] = field(default_factory=list)
    shares: list[ShareRecord] = field(default_factory=list)
    slots: int = 1
    budget: float = 0.0
    summary_path: str = ""

    @property
    def findings(self) -> int:
        return sum(r.findings for r in self.results)

    @property
    def flat(self) -> list[str]:
        """Targets whose libFuzzer coverage never grew past what their corpus gave (or that never
        got through their corpus)."""
        return [r.target for r in self.results if r.coverage_grew is False or unloaded(r)]

    @property
    def interrupted(self) -> bool:
        return any(r.interrupted for r in self.results)

    def shares_of(self, target: str) -> int:
        return sum(1 for s in self.shares if s.target == target)

    def as_dict(self) -> dict[str, Any]:
        return {"targets": [{**r.as_dict(), "shares": self.shares_of(r.target)} for r in self.results],
                "findings": self.findings, "lookups_checked": sum(r.lookups for r in self.results),
                "execs": sum(r.execs for r in self.results), "summary": self.summary_path,
                **{k: sum(r.counters.get(k, 0) for r in self.results) for k in COUNTERS},
                "budget_s": self.budget, "slots": self.slots, "coverage_flat": self.flat,
                "interrupted": self.interrupted,
                "schedule": [s.as_dict() for s in self.shares]}


def costs(out: Path, targets: Sequence[str], corpora: Path) -> dict[str, float]:
    """Expected start-up + corpus-load seconds per target, for the sweep order: the corpus load
    time measured in the previous summary in `out` if there is one, else a FUSE mount's start-up
    (2 s) for the targets that mount and the corpus size at 100 inputs/s."""
    known: dict[str, float] = {}
    try:
        for t in json.loads((out / "summary.json").read_text()).get("targets", []):
            if t.get("execs_per_s") and t.get("corpus_execs") is not None:
                known[t["target"]] = min(60.0, t["corpus_execs"] / t["execs_per_s"])
    except (OSError, ValueError, TypeError, KeyError):
        pass

    def guess(t: str) -> float:
        d = corpora / t
        files = sum(1 for p in d.rglob("*") if p.is_file()) if d.is_dir() else 0
        return (2.0 if load(t).uses_fuse else 0.0) + files / 100
    return {t: known.get(t, guess(t)) for t in targets}


def run_default(out: Path, budget: float = 180.0, crashers: Path = Path("crashers"),
                progress: Callable[[str], None] | None = None, *, slots: int | None = None,
                targets: Sequence[str] = (), corpora: Path = Path("corpora")) -> DefaultRun:
    names = list(targets) or default_names()
    cores = slots or default_jobs()
    n_slots = max(1, min(cores, len(names)))
    sweep_s = SWEEP_S
    schedule = Schedule(names, sweep_s=sweep_s, quantum_s=min(300.0, max(5.0, budget / 12)),
                        costs=costs(out, names, corpora))
    done = run_shares(schedule, slots=n_slots, budget=budget, workdir=out, progress=progress,
                      jobs_per_share=max(1, cores // len(names)), crashers=crashers, corpora=corpora)
    run = DefaultRun([done.results[n] for n in names if n in done.results], done.shares, n_slots, budget)
    if progress:
        for r in run.results:
            if w := flat_warning(r, run.shares_of(r.target)):
                progress(w)
    out.mkdir(parents=True, exist_ok=True)
    run.summary_path = os.path.join(out, "summary.json")
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(run.as_dict(), indent=2))
    os.replace(tmp, run.summary_path)
    return run
