"""Generic minimization: shrink a list (or bytes) while a predicate ("same signature") holds.

ddmin-like (syzkaller's minimize.Slice): remove chunks of half, quarter, ... one element; after a
successful removal retry at the same granularity. Candidates already tried are never run again
(Hypothesis's no-progress-on-rerun rule). Cost: O(n log n) predicate calls typically, O(n^2) at
worst, capped by `max_steps`. Bytes are minimized as chunks (544-byte entries when the input is
large), then bytes, then by zeroing each non-zero byte (zero is famfs's filler).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MinimizeResult(Generic[T]):
    value: T
    steps: int
    original_size: int
    final_size: int


class _Budget:
    def __init__(self, max_steps: int):
        self.left = max_steps
        self.steps = 0
        self.seen: set[object] = set()

    def try_(self, key: object, fn: Callable[[], bool]) -> bool:
        if key in self.seen or self.left <= 0:
            return False
        self.seen.add(key)
        self.left -= 1
        self.steps += 1
        return fn()


def _ddmin(items: list[T], still_fails: Callable[[list[T]], bool], budget: _Budget) -> list[T]:
    n = max(1, len(items) // 2)
    while items and n >= 1 and budget.left > 0:
        i = 0
        removed = False
        while i < len(items) and budget.left > 0:
            cand = items[:i] + items[i + n:]
            if budget.try_(("l", len(cand), hash(repr(cand))), functools.partial(still_fails, cand)):
                items = cand
                removed = True
            else:
                i += n
        if not removed:
            n //= 2
    return items


def minimize(items: Sequence[T], still_fails: Callable[[list[T]], bool], *,
             max_steps: int = 2000) -> MinimizeResult[list[T]]:
    budget = _Budget(max_steps)
    out = _ddmin(list(items), still_fails, budget)
    return MinimizeResult(out, budget.steps, len(items), len(out))


def minimize_bytes(data: bytes, still_fails: Callable[[bytes], bool], *, chunk: int | None = None,
                   max_steps: int = 2000) -> MinimizeResult[bytes]:
    budget = _Budget(max_steps)
    size = chunk or (544 if len(data) > 4096 else 1)
    chunks = [bytes(data[i:i + size]) for i in range(0, len(data), size)]

    def joined_fails(c: list[bytes]) -> bool:
        return still_fails(b"".join(c))
    chunks = _ddmin(chunks, joined_fails, budget)
    cur = b"".join(chunks)
    if size > 1:
        singles: list[bytes] = [cur[i:i + 1] for i in range(len(cur))]
        kept = _ddmin(singles, joined_fails, budget)
        cur = b"".join(kept)
    buf = bytearray(cur)
    for i in range(len(buf)):
        if buf[i] and budget.left > 0:
            cand = bytes(buf[:i]) + b"\0" + bytes(buf[i + 1:])
            if budget.try_(("z", cand), functools.partial(still_fails, cand)):
                buf[i] = 0
    return MinimizeResult(bytes(buf), budget.steps, len(data), len(buf))
