"""Torn log appends: every state a concurrent reader can see while the master appends.

The master's append is a program of stores (`image.LogWriter.stores`): entry pieces, a write
barrier, the two counters. On weak memory the stores between two barriers may become visible in
any order and any subset; stores after a barrier only once everything before it is visible. For
a short workload (ACE's insight: most crash-consistency bugs need <= 3 operations) this module
enumerates *every* such visible state of every append and hands each to a reader, so the check
is exhaustive, not sampled.
"""
from __future__ import annotations

from itertools import combinations
from typing import Iterator


def visible_states(program: list[tuple[int, bytes] | None]) -> Iterator[list[tuple[int, bytes]]]:
    """Each set of stores a reader may see mid-append (the complete append last)."""
    epochs: list[list[tuple[int, bytes]]] = [[]]
    for store in program:
        if store is None:
            epochs.append([])
        else:
            epochs[-1].append(store)
    done: list[tuple[int, bytes]] = []
    for epoch in epochs:
        for n in range(len(epoch)):
            for subset in combinations(epoch, n):
                yield done + list(subset)
        done = done + epoch
    yield done


def apply(device: bytearray, stores: list[tuple[int, bytes]]) -> bytearray:
    out = bytearray(device)
    for off, data in stores:
        out[off:off + len(data)] = data
    return out
