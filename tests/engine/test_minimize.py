"""Minimization of a list and of bytes."""
from __future__ import annotations

from harness.engine.minimize import minimize, minimize_bytes


def test_minimize_list_and_bytes():
    r = minimize(list(range(60)), lambda c: 3 in c and 17 in c)
    assert r.value == [3, 17]
    calls = []
    r = minimize(list(range(60)), lambda c: calls.append(1) or 3 in c, max_steps=5)
    assert len(calls) <= 5
    blob = bytes(range(1, 250)) * 4
    r = minimize_bytes(blob, lambda d: b"\x07" in d and b"\x09" in d)
    assert sorted(r.value) == [7, 9] and r.final_size == 2 < r.original_size
