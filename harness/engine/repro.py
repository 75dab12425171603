"""Reproduction through a narrow interface: an `Executor` runs bytes and says what happened.

`reproduce` runs one input n times and counts the runs whose signature equals the recorded one
(k of n); tests pass a fake executor (after syzkaller's testExecInterface).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.engine.signature import Signature


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run of an input produced: its signature (None: no finding) and a detail line."""

    signature: Signature | None
    detail: str = ""


class Executor(Protocol):
    def run(self, data: bytes) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Reproduction:
    k: int
    n: int
    outcomes: tuple[Outcome, ...]


def reproduce(executor: Executor, data: bytes, expected: Signature, times: int = 10) -> Reproduction:
    outcomes = tuple(executor.run(data) for _ in range(times))
    return Reproduction(sum(1 for o in outcomes if o.signature == expected), times, outcomes)
