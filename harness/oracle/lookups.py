"""The index-lookup checker: records every probe event, then judges every lookup against the model.

`LookupChecker` is a `Probe`: during an operation its hooks only append events (so no `except`
inside famfs can hide a finding); `check()` runs afterwards and raises `InvariantViolation` for
the first broken rule. What it knows comes from outside famfs: the expected index -> UUID table
(from the reference model or the spec that built the image), per node which UUID each
node-local device name carries (read from the devices by the harness, not by the daemon), and
per node which indices may fail and why (`justify`, built by the oracle from the model and the
node's devices: `oracle.case.Expectation`).

Every lookup is classified as one of three:

* ok: it succeeded, saw a complete slot (TBL-PUBLISH), and returned the device carrying the UUID
  the log gave that index (IDX-LOOKUP); all nodes that looked up index i got the same UUID
  (IDX-CLUSTER). A successful lookup of an index the model does not know is IDX-LOOKUP.
* justified: it failed cleanly (EIO, the kernel's errno for every lookup failure) and the model
  names a cause in force at that moment (`Why`): the index is not defined, its UUID is missing
  on this node or claimed by two local devices, a fault injected on its device, the table being
  torn down, or the ABI generation's own documented refusal.
* unjustified: every other failure, a finding: IDX-LOOKUP (IDX-PRIMARY for index 0, which is
  known at mount).

The causes are per node and can change during a case (`allow` / `clear`): a lookup after its
cause is gone must succeed, since lazy discovery is retried, never cached as a failure.
"""
from __future__ import annotations

import errno as errnos
import traceback
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from harness.famfs.ids import Uuid, uuid_str
from harness.famfs.invariants import Invariant
from harness.famfs.probe import Probe
from harness.oracle.invariants import InvariantViolation


class Why(StrEnum):
    """Why a lookup (or a read of the ranges on that index) may fail cleanly."""

    UNDEFINED = "undefined"       # the log does not define the index (at this point of the log)
    MISSING = "missing"           # no device on this node carries the index's UUID
    AMBIGUOUS = "ambiguous"       # two local devices claim the UUID (IDX-RESOLVE: refuse both)
    FAULT = "fault"               # a fault injected on its device is in force
    TEARDOWN = "teardown"         # the daxdev table is being torn down
    PUBLISHING = "publishing"     # the slot is being published right now (not valid yet)
    REFUSED = "refused"           # the ABI generation's documented refusal (push-fd bad file, backing-id)
    BEYOND_TABLE = "beyond-table"  # past this kernel generation's daxdev table (the log allows 64 indices)


@dataclass(frozen=True, slots=True)
class LookupEvent:
    node: str
    index: int
    name: str | None
    devno: int
    errno: int


@dataclass(frozen=True, slots=True)
class InternalError:
    """Something other than a typed FamfsError escaped famfs (`Probe.internal_error`): where,
    the exception's type and text, and its traceback text (from the process that saw it)."""

    where: str
    type: str
    message: str
    traceback: str


class Counts(int):
    """What one case's checks counted: lookups ok / justified / unjustified (an unjustified one
    raises, and the finding carries the counts). The int value is the total of lookups checked,
    so a caller that only adds up totals keeps working; `engine.runner` reads the parts."""

    ok: int
    justified: int
    unjustified: int

    def __new__(cls, ok: int = 0, justified: int = 0, unjustified: int = 0) -> "Counts":
        self = super().__new__(cls, ok + justified + unjustified)
        self.ok, self.justified, self.unjustified = ok, justified, unjustified
        return self

    def __setattr__(self, name: str, value: object) -> None:
        if name in self.__dict__:
            raise AttributeError("Counts is a value")
        super().__setattr__(name, value)

    @property
    def total(self) -> int:
        return int(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Counts):
            return (self.ok, self.justified, self.unjustified) == (other.ok, other.justified, other.unjustified)
        return int(self) == other

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return f"Counts(ok={self.ok}, justified={self.justified}, unjustified={self.unjustified})"


@dataclass
class LookupChecker(Probe):
    """Records lookups (and other events) and judges them against `expected` (index -> UUID),
    `names` (node -> local name -> UUID) and `justify` (node -> index -> Why; node "*": all)."""

    expected: Mapping[int, Uuid] = field(default_factory=dict)
    names: dict[str, dict[str, Uuid]] = field(default_factory=dict)
    justify: dict[str, dict[int, Why]] = field(default_factory=dict)
    site: str = ""                              # which famfs path the lookups came through (signatures)
    lookups: list[LookupEvent] = field(default_factory=list)
    events: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    internal: list[InternalError] = field(default_factory=list)
    checked: int = 0
    ok: int = 0
    justified: int = 0
    unjustified: int = 0
    cluster: dict[int, tuple[str, Uuid]] = field(default_factory=dict)   # index -> first (node, UUID)
    enabled = True

    # -- the probe's hooks: record only ---------------------------------------------------------

    def lookup(self, node: str, index: int, name: str | None, devno: int, errno: int) -> None:
        self.lookups.append(LookupEvent(node, index, name, devno, errno))

    def index_assigned(self, index: int, uuid: Uuid, size: int, entry: int | None) -> None:
        self.events.append(("index_assigned", (index, uuid, size, entry)))

    def slot_published(self, node: str, index: int, name: str | None, valid: bool) -> None:
        self.events.append(("slot_published", (node, index, name, valid)))

    def device_resolved(self, node: str, uuid: Uuid, name: str | None) -> None:
        self.events.append(("device_resolved", (node, uuid, name)))

    def rejected(self, error: Any) -> None:
        self.events.append(("rejected", (error,)))

    def internal_error(self, where: str, error: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.internal.append(InternalError(where, type(error).__name__, str(error), tb))

    # -- what the oracle says may fail --------------------------------------------------------

    def allow(self, node: str, index: int, why: Why) -> None:
        """From now on a lookup of `index` on `node` may fail, because of `why`."""
        self.justify.setdefault(node, {})[index] = why

    def clear(self, node: str, index: int | None = None) -> None:
        """The cause is gone (the fault is lifted, ...): lookups of `index` (None: all) must succeed."""
        if index is None:
            self.justify.pop(node, None)
        else:
            self.justify.get(node, {}).pop(index, None)

    def why(self, node: str, index: int) -> Why | None:
        """The model's reason for a failed lookup of `index` on `node` at this moment, or None."""
        why = self.justify.get(node, {}).get(index) or self.justify.get("*", {}).get(index)
        if why is None and self.expected.get(index) is None:
            return Why.UNDEFINED
        return why

    # -- the judgement --------------------------------------------------------------------------

    def check(self) -> int:
        """Judge every lookup recorded since the last call; returns how many were judged.
        An internal error recorded meanwhile is raised first (`InternalFinding`)."""
        if self.internal:
            raise InternalFinding(self.internal[0])
        seen = self.cluster
        pending, self.lookups = self.lookups, []
        for ev in pending:
            self.checked += 1
            if ev.errno:
                self._judge_failure(ev)
                self.justified += 1
                continue
            if ev.name is None or ev.devno == 0:
                self.unjustified += 1
                raise self._violation(Invariant.TBL_PUBLISH, f"node {ev.node}: lookup of index {ev.index} saw a "
                                                             f"valid slot with name={ev.name!r} devno={ev.devno}")
            got = self.names.get(ev.node, {}).get(ev.name)
            want = self.expected.get(ev.index)
            if want is None:
                self.unjustified += 1
                raise self._violation(Invariant.IDX_LOOKUP, f"node {ev.node}: index {ev.index}, which the log does "
                                                            f"not define, resolved to {ev.name} ({_text(got)})")
            if got is None or got != want:
                self.unjustified += 1
                raise self._violation(Invariant.IDX_LOOKUP, f"node {ev.node}: index {ev.index} resolved to "
                                                            f"{ev.name} ({_text(got)}), the log gave it {_text(want)}")
            first = seen.setdefault(ev.index, (ev.node, got))
            if first[1] != got:
                self.unjustified += 1
                raise self._violation(Invariant.IDX_CLUSTER, f"index {ev.index} is {_text(first[1])} on {first[0]} "
                                                             f"but {_text(got)} on {ev.node}")
            self.ok += 1
        return len(pending)

    def _judge_failure(self, ev: LookupEvent) -> None:
        why = self.why(ev.node, ev.index)
        if why is not None and ev.errno == errnos.EIO:
            return
        self.unjustified += 1
        inv = Invariant.IDX_PRIMARY if ev.index == 0 else Invariant.IDX_LOOKUP
        cause = f"the model allows it ({why})" if why else "nothing the model knows justifies it"
        raise self._violation(inv, f"node {ev.node}: lookup of index {ev.index} failed with errno {ev.errno} "
                                   f"({errnos.errorcode.get(ev.errno, '?')}); {cause}"
                                   + ("" if why is None else ", but a clean lookup failure is EIO"))

    def _violation(self, inv: Invariant, message: str) -> InvariantViolation:
        v = InvariantViolation(inv, message, op="lookup", site=self.site)
        v.counts = self.counts                   # what the case judged
        return v

    @property
    def counts(self) -> Counts:
        """Lookups judged so far, by class."""
        return Counts(self.ok, self.justified, self.unjustified)


def _text(uuid: Uuid | None) -> str:
    """A UUID for a message: libuuid's text for 16 bytes, as it is otherwise (a test's token)."""
    if isinstance(uuid, bytes) and len(uuid) == 16:
        return uuid_str(uuid)
    return str(uuid)


class InternalFinding(Exception):
    """Raised by `LookupChecker.check` when famfs reported an internal error (an exception other
    than a typed FamfsError escaped a handler): a finding of its own kind, whose signature is
    built from the famfs frames of the reporting process's traceback (`engine.signature`)."""

    def __init__(self, error: InternalError):
        super().__init__(f"internal error in {error.where}: {error.type}: {error.message}")
        self.error = error
