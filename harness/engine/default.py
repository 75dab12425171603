"""The README's main job: a default campaign over every target, mount_e2e's real FUSE mount included.

Each target gets an equal share of the budget under Atheris, with the seed corpora and the
repository's crash store; the result is one line per target and a JSON summary in the run
directory. Exit 1 if any target recorded a finding.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.engine.campaign import FuzzResult, fuzz
from harness.engine.registry import default_names


@dataclass
class DefaultRun:
    results: list[FuzzResult] = field(default_factory=list)
    summary_path: str = ""

    @property
    def findings(self) -> int:
        return sum(r.findings for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"targets": [r.as_dict() for r in self.results], "findings": self.findings,
                "lookups_checked": sum(r.lookups for r in self.results),
                "execs": sum(r.execs for r in self.results), "summary": self.summary_path}


def run_default(out: Path, budget: float = 180.0, crashers: Path = Path("crashers"),
                progress: Callable[[str], None] | None = None) -> DefaultRun:
    targets = default_names()
    share = max(5.0, budget / len(targets))
    run = DefaultRun()
    for name in targets:
        if progress:
            progress(f"{name}: fuzzing for {share:.0f} s")
        run.results.append(fuzz(name, engine="atheris", max_time=share, crashers=crashers, workdir=out,
                                progress=progress))
    out.mkdir(parents=True, exist_ok=True)
    run.summary_path = os.path.join(out, "summary.json")
    with open(run.summary_path, "w") as f:
        json.dump(run.as_dict(), f, indent=2)
    return run
