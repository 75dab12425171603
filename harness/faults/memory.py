"""A small weak-memory model: per-CPU store buffers that drain in any order between barriers.

On a weakly ordered CPU (and across cache-incoherent CXL nodes) a store sits in its CPU's store
buffer until it drains to shared memory, and stores not separated by a barrier may drain in any
order. `WeakMemory` models exactly that: `store(cpu, loc, v)` queues into `cpu`'s buffer with the
CPU's current epoch; `barrier(cpu)` starts a new epoch; `drainable()` lists the stores that may
become visible next (any store of the oldest epoch still pending); `drain(choice)` commits one.
A CPU reads its own latest pending store (store forwarding), other CPUs read shared memory.

It implements the memory interface of `harness.famfs.daxtable` (store/load/barrier), so the
kernel side's own publish code runs on it unchanged; a scheduler (`schedule.py`) decides when
each store drains.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable


@dataclass
class Pending:
    loc: Hashable
    value: Any
    epoch: int


@dataclass
class WeakMemory:
    """Shared memory plus one store buffer per CPU."""

    shared: dict[Hashable, Any] = field(default_factory=dict)
    buffers: dict[str, list[Pending]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    cpu: str = "cpu0"                     # the CPU the kernel code currently runs on

    def store(self, loc: Hashable, value: Any) -> None:
        self.buffers.setdefault(self.cpu, []).append(Pending(loc, value, self.epochs.get(self.cpu, 0)))

    def barrier(self) -> None:
        self.epochs[self.cpu] = self.epochs.get(self.cpu, 0) + 1

    def release(self) -> None:
        """A lock release: the current CPU's stores all become visible before the lock is free."""
        for p in self.buffers.pop(self.cpu, []):
            self.shared[p.loc] = p.value

    def load(self, loc: Hashable, default: Any = None) -> Any:
        for p in reversed(self.buffers.get(self.cpu, [])):
            if p.loc == loc:
                return p.value
        return self.shared.get(loc, default)

    def drainable(self) -> list[tuple[str, int]]:
        """(cpu, position) of every store that may become visible next."""
        out = []
        for cpu, buf in sorted(self.buffers.items()):
            if buf:
                oldest = min(p.epoch for p in buf)
                out += [(cpu, k) for k, p in enumerate(buf) if p.epoch == oldest]
        return out

    def drain(self, which: tuple[str, int]) -> None:
        cpu, k = which
        p = self.buffers[cpu].pop(k)
        self.shared[p.loc] = p.value

    def drain_all(self) -> None:
        while self.drainable():
            self.drain(self.drainable()[0])
