"""The index-lookup checker: records every probe event, then checks every lookup against the log.

`LookupChecker` is a `Probe`: during an operation its hooks only append events (so no `except`
inside famfs can hide a finding); `check()` runs afterwards and raises `InvariantViolation` for
the first broken rule. What it knows comes from outside famfs: the expected index -> UUID table
(from the reference model or the spec that built the image) and, per node, which UUID each
node-local device name carries (read from the devices by the harness, not by the daemon).

Checked for every lookup event:
* TBL-PUBLISH: a lookup that succeeded saw a complete slot (a name and a dev_t).
* IDX-LOOKUP: the device it returned carries the UUID the log gave that index.
* IDX-CLUSTER: all nodes that looked up index i got the same UUID.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.famfs.invariants import Invariant
from harness.famfs.probe import Probe
from harness.oracle.invariants import InvariantViolation


@dataclass(frozen=True, slots=True)
class LookupEvent:
    node: str
    index: int
    name: str | None
    devno: int
    errno: int


@dataclass
class LookupChecker(Probe):
    """Records lookups (and other events) and checks them against `expected` (index -> UUID)."""

    expected: dict[int, str] = field(default_factory=dict)
    names: dict[str, dict[str, str]] = field(default_factory=dict)   # node -> local name -> UUID
    lookups: list[LookupEvent] = field(default_factory=list)
    events: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    checked: int = 0
    cluster: dict[int, tuple[str, str]] = field(default_factory=dict)   # index -> first (node, UUID)
    enabled = True

    def lookup(self, node: str, index: int, name: str | None, devno: int, errno: int) -> None:
        self.lookups.append(LookupEvent(node, index, name, devno, errno))

    def index_assigned(self, index: int, uuid: str, size: int, entry: int | None) -> None:
        self.events.append(("index_assigned", (index, uuid, size, entry)))

    def slot_published(self, node: str, index: int, name: str | None, valid: bool) -> None:
        self.events.append(("slot_published", (node, index, name, valid)))

    def device_resolved(self, node: str, uuid: str, name: str | None) -> None:
        self.events.append(("device_resolved", (node, uuid, name)))

    def rejected(self, error: Any) -> None:
        self.events.append(("rejected", (error,)))

    def internal_error(self, where: str, error: BaseException) -> None:
        self.events.append(("internal_error", (where, error)))

    def check(self) -> int:
        """Check every lookup recorded since the last call; returns how many were checked."""
        seen = self.cluster
        pending, self.lookups = self.lookups, []
        for ev in pending:
            self.checked += 1
            if ev.errno:
                continue
            if ev.name is None or ev.devno == 0:
                raise InvariantViolation(Invariant.TBL_PUBLISH,
                                         f"node {ev.node}: lookup of index {ev.index} saw a valid slot "
                                         f"with name={ev.name!r} devno={ev.devno}")
            got = self.names.get(ev.node, {}).get(ev.name)
            want = self.expected.get(ev.index, got)          # an index the harness cannot know: cluster only
            if got is None or got != want:
                raise InvariantViolation(Invariant.IDX_LOOKUP,
                                         f"node {ev.node}: index {ev.index} resolved to {ev.name} "
                                         f"({got}), the log gave it {want}")
            first = seen.setdefault(ev.index, (ev.node, got))
            if first[1] != got:
                raise InvariantViolation(Invariant.IDX_CLUSTER,
                                         f"index {ev.index} is {first[1]} on {first[0]} but {got} on {ev.node}")
        return len(pending)
