"""faults.statecov: every scheduled step is reported as its own edge, and each pair has its own code."""
from __future__ import annotations

import itertools
import os

from harness.faults import schedule, statecov
from harness.faults.races import PUBLISH_EXPECTED, publish_case
from harness.oracle.lookups import LookupChecker


def test_each_pair_and_pending_state_has_its_own_code_object():
    codes = [f.__code__ for f in statecov._PAIRS] + [f.__code__ for f in statecov._PENDING]
    assert len(statecov._PAIRS) == statecov.N ** 2 and len(statecov._PENDING) == statecov.N * 4
    assert len({(c.co_firstlineno, c.co_name) for c in codes}) == len(codes)


def test_kind_of_classifies_the_schedulers_labels():
    k = schedule.kind_of
    assert k("store slot 1 devno") == statecov.STORE
    assert k("store slot 1 valid") == statecov.STORE_VALID
    assert k("store slot 1 valid (first: fault)") == statecov.STORE_VALID
    assert k("wmb") == statecov.WMB
    assert k("load slot 1 valid=0") == statecov.LOAD_INVALID
    assert k("load slot 1 valid=1") == statecov.LOAD_VALID
    assert k("load slot 1 device, name") == statecov.LOAD_FIELD
    assert k("drain cpu0 (1, 'valid')") == statecov.DRAIN_VALID
    assert k("drain cpu0 (1, 'devno')") == statecov.DRAIN
    assert k("GET_DAXDEV(1) sent") == statecov.OTHER


def test_every_step_of_a_schedule_reaches_statecov(monkeypatch):
    seen: list[tuple[str, int, int]] = []
    monkeypatch.setattr(statecov, "pair", lambda p, c: seen.append(("pair", p, c)))
    monkeypatch.setattr(statecov, "pending", lambda c, n: seen.append(("pending", c, n)))
    checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1])
    r = publish_case(schedule.byte_chooser(os.urandom(64)), checker)
    pairs = [s for s in seen if s[0] == "pair"]
    assert len(pairs) == len(r.trace) == len([s for s in seen if s[0] == "pending"])
    assert all(b[1] == a[2] for a, b in itertools.pairwise(pairs))      # prev of each step = kind of the last
    kinds = {statecov.KINDS[c] for _, _, c in pairs}
    assert {"store", "wmb", "store_valid"} <= kinds
