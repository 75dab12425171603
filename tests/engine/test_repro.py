"""Reproduction counts k of n."""
from __future__ import annotations

import pytest

from harness.engine.repro import Outcome, reproduce
from harness.engine.signature import Signature


class Fake:
    def __init__(self, pattern: list[bool]):
        self.pattern, self.i = pattern, 0

    def run(self, data: bytes) -> Outcome:
        hit = self.pattern[self.i % len(self.pattern)]
        self.i += 1
        return Outcome(Signature.of("invariant", "DATA") if hit else None)


@pytest.mark.parametrize("pattern, k", [([True], 10), ([True, False], 5), ([False], 0)])
def test_reproduce_counts_k_of_n(pattern, k):
    r = reproduce(Fake(pattern), b"x", Signature.of("invariant", "DATA"), times=10)
    assert (r.k, r.n) == (k, 10)
