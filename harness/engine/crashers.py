"""Working with recorded crashes: reproduce one, minimize one, replay the regression corpus.

A crash folder is `crashers/<target>/<key>/`; these functions take its path, as the repro command
line recorded in `crash.json` does, and read the target from its `crash.json` (not from the
folder's parent), so a folder copied elsewhere works as it is. Reproduction runs the input through the target in this
process `times` times and reports k of n runs with the recorded signature; minimization shrinks
the input while the signature stays the same; `regress` runs every file under
`corpora/<target>/regress/` and reports each that is a finding again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.engine.crashstore import CrashStore
from harness.engine.errors import HarnessError
from harness.engine.minimize import minimize_bytes
from harness.engine.registry import load, names
from harness.engine.repro import Outcome, reproduce
from harness.engine.runner import CaseRunner
from harness.engine.signature import Signature


def _locate(folder: Path) -> tuple[CrashStore, str, str]:
    """The store, target and key of a crash folder: the target comes from its crash.json, so a
    folder copied anywhere (a CI artifact, a bug report) reproduces as it is."""
    if not (folder / "crash.json").is_file():
        raise HarnessError(f"{folder.resolve()}: not a crash folder (no crash.json)")
    return CrashStore.of_folder(folder)


class _Executor:
    """Runs inputs through a target, in this process (the `repro.Executor` protocol)."""

    def __init__(self, target_name: str):
        self.runner = CaseRunner(load(target_name))

    def run(self, data: bytes) -> Outcome:
        sig, tb, _ = self.runner.outcome(data)
        return Outcome(sig, tb.strip().splitlines()[-1] if tb else "")


@dataclass
class ReproResult:
    """How often a recorded crash happens again with the current code."""

    folder: str
    target: str
    title: str
    k: int
    n: int
    last: str = ""

    @property
    def reproduces(self) -> bool:
        return self.k > 0

    def as_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "target": self.target, "title": self.title, "reproduced": self.k,
                "runs": self.n, "last": self.last}


def repro(folder: Path, times: int = 10, *, use_minimized: bool = True, record: bool = True) -> ReproResult:
    store, target, key = _locate(folder)
    rec = store.fetch(target, key)
    data = rec.minimized if (use_minimized and rec.minimized is not None) else rec.input
    expected = Signature.from_dict(rec.signature)
    r = reproduce(_Executor(target), data, expected, times=times)
    if record:
        store.set_reproduced(target, key, r.k, r.n)
    last = next((o.detail for o in reversed(r.outcomes) if o.signature is not None), "")
    return ReproResult(str(folder), target, expected.title, r.k, r.n, last)


@dataclass
class MinimizeOutcome:
    folder: str
    original: int
    final: int
    steps: int

    def as_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "original_size": self.original, "final_size": self.final,
                "steps": self.steps}


def minimize(folder: Path, max_steps: int = 2000) -> MinimizeOutcome:
    store, target, key = _locate(folder)
    rec = store.fetch(target, key)
    expected = Signature.from_dict(rec.signature)
    ex = _Executor(target)
    if ex.run(rec.input).signature != expected:
        raise HarnessError(f"{folder}: the input does not reproduce {expected.title}; nothing to minimize")
    result = minimize_bytes(rec.input, lambda d: ex.run(d).signature == expected, max_steps=max_steps)
    store.set_minimized(target, key, result.value)
    return MinimizeOutcome(str(folder), result.original_size, result.final_size, result.steps)


@dataclass
class RegressResult:
    inputs: dict[str, int] = field(default_factory=dict)        # target -> inputs replayed
    failures: list[dict[str, str]] = field(default_factory=list)
    lookups: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "failures": self.failures, "lookups_checked": self.lookups}


def regress(targets: Sequence[str] = (), corpora: Path = Path("corpora"), *, all_inputs: bool = False) -> RegressResult:
    """Replay corpora/<target>/regress/ (with `all_inputs`, the whole corpus) of every target."""
    out = RegressResult()
    for name in targets or names():
        base = corpora / name
        files = sorted(p for p in (base.rglob("*") if all_inputs else (base / "regress").glob("*"))
                       if p.is_file() and p.name != "README.md")
        runner = CaseRunner(load(name), engine="regress")
        for p in files:
            sig = runner.run_one(p.read_bytes())
            if sig is not None:
                out.failures.append({"target": name, "input": str(p), "signature": sig.title})
        out.inputs[name] = len(files)
        out.lookups += runner.stats.lookups
    return out
