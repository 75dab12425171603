"""Deterministic schedules: tasks are generators that yield after each step; the input chooses.

A `Scheduler` runs tasks (Python generators, each step one atomic action: a store, a load, a
message round trip) and, before every step, lets its `chooser` pick among the runnable actions:
one task's next step, or draining one store of the weak memory. The chooser reads bytes (Atheris)
or a Hypothesis `data` object, so a schedule is reproduced exactly from its input and shrinks
with it. `trace` records what ran, in order: the crasher's readable schedule. Every step is also
reported to `faults.statecov` (its kind after the previous step's kind, and how many stores are
still buffered), the interleaving signal libFuzzer's coverage sees.

A task that yields a label starting with "wait" is spinning on a condition (a lock): it is not
offered again until some other step has run, since re-checking an unchanged state changes
nothing. So no schedule spends its steps spinning (the bytes' default past their end, option 0,
used to pick a waiting cpu0 for all of `max_steps`: 28 ms a teardown case instead of 1 ms), and
when every live task waits and no store can drain, `deadlock` names them: no step can ever
release them, a finding for the case to judge.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator

from harness.faults import statecov
from harness.faults.memory import WeakMemory

Task = Generator[str, None, Any]


@dataclass
class Scheduler:
    memory: WeakMemory
    choose: Callable[[int], int]                  # n options -> index in [0, n)
    trace: list[str] = field(default_factory=list)
    max_steps: int = 10_000
    deadlock: list[str] = field(default_factory=list)   # tasks left waiting with nothing to release them

    def run(self, tasks: dict[str, Task]) -> dict[str, Any]:
        """Run `tasks` (name -> generator) to completion under the chooser; their results."""
        live = dict(tasks)
        results: dict[str, Any] = {}
        waiting: set[str] = set()
        prev = statecov.OTHER
        for _ in range(self.max_steps):
            options: list[tuple[str, Any]] = [("task", n) for n in sorted(live) if n not in waiting]
            options += [("drain", d) for d in self.memory.drainable()]
            if not options:
                if not live:
                    break
                self.deadlock = sorted(live)
                self.trace.append(f"deadlock: {', '.join(self.deadlock)} wait, nothing can run")
                break
            kind, what = options[self.choose(len(options))]
            if kind == "drain":
                loc = self.memory.buffers[what[0]][what[1]].loc
                self.memory.drain(what)
                self.trace.append(f"drain {what[0]} {loc}")
                prev = self._feature(prev, self.trace[-1])
                waiting.clear()
                continue
            self.memory.cpu = what
            try:
                label = next(live[what])
                self.trace.append(f"{what}: {label}")
                prev = self._feature(prev, label)
                if label.startswith("wait"):
                    waiting.add(what)
                else:
                    waiting.clear()
            except StopIteration as done:
                results[what] = done.value
                del live[what]
                waiting.clear()
        self.memory.drain_all()
        return results

    def _feature(self, prev: int, label: str) -> int:
        cur = kind_of(label)
        statecov.pair(prev, cur)
        statecov.pending(cur, sum(len(b) for b in self.memory.buffers.values()))
        return cur


def kind_of(label: str) -> int:
    """The `statecov` step kind of one trace label (a task's step or a drain)."""
    if label.startswith("drain"):
        return statecov.DRAIN_VALID if "'valid'" in label else statecov.DRAIN
    if label.startswith("store"):
        return statecov.STORE_VALID if label.endswith("valid") or "valid (first" in label else statecov.STORE
    if label == "wmb":
        return statecov.WMB
    if label.startswith("load"):
        if "valid=" in label:
            return statecov.LOAD_VALID if label.endswith("valid=1") else statecov.LOAD_INVALID
        return statecov.LOAD_FIELD
    return statecov.OTHER


def byte_chooser(data: bytes) -> Callable[[int], int]:
    """Choices from bytes; past the end, always the first option (so every input terminates)."""
    it: Iterator[int] = iter(data)

    def choose(n: int) -> int:
        return next(it, 0) % n
    return choose
