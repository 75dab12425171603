"""Signatures: famfs frames only, stable keys, invariant findings; the kinds and frames follow the
system the layer above declares (`targets.SYSTEM`), which the engine itself never imports."""
from __future__ import annotations

import pytest

from harness.engine import registry
from harness.engine.registry import System
from harness.engine.signature import Signature
from harness.famfs import layout as L
from harness.famfs.invariants import Invariant
from harness.oracle.invariants import InvariantViolation


def famfs_crash() -> BaseException:
    try:
        L.SimpleFmap.of([L.SimpleExtent(0, 0, 0)] * 17)      # ValueError inside harness/famfs
    except ValueError as e:
        return e
    raise AssertionError("no error")


def test_signature_keeps_famfs_frames_only_and_is_stable():
    a, b = Signature.from_exception(famfs_crash()), Signature.from_exception(famfs_crash())
    assert a == b and a.key == b.key and len(a.key) == 12
    assert a.kind == "exception" and a.what == "ValueError"
    assert a.frames[0] == "harness/famfs/layout.py:_slots"
    assert not any("tests/" in f for f in a.frames)
    assert ":" in a.title and not any(ch.isdigit() for ch in a.frames[0].split(":")[1])


def test_signature_of_an_invariant_violation():
    s = Signature.from_exception(InvariantViolation(Invariant.IDX_LOOKUP, "x"))
    assert (s.kind, s.what) == ("invariant", "IDX-LOOKUP")
    assert Signature.from_dict(s.as_dict()) == s
    assert Signature.of("invariant", "IDX-DENSE").key != s.key


def test_the_system_under_test_is_declared_by_the_targets_package():
    import targets
    sut = registry.system()
    assert sut.package == targets.SYSTEM["package"] == "harness.famfs"
    assert sut.frames_prefix == "harness/famfs/"
    assert sut.covers("harness.famfs.layout") and not sut.covers("harness.famfsx") and not sut.covers("harness.gen")
    assert sut.finding_kinds["InvariantViolation"] == "invariant"


@pytest.fixture
def other_system(monkeypatch):
    """The engine told of another system: no package under test, a custom finding type."""
    monkeypatch.setattr(registry, "_SYSTEM", [System(finding_kinds={"Boom": "daemon-death"})])


class Boom(Exception):
    pass


def test_kinds_and_frames_follow_the_declared_system(other_system):
    s = Signature.from_exception(famfs_crash())
    assert (s.kind, s.what, s.frames) == ("exception", "ValueError", ())     # famfs is not under test here
    assert Signature.from_exception(Boom()).kind == "daemon-death"
    v = Signature.from_exception(InvariantViolation(Invariant.IDX_LOOKUP, "x"))
    assert (v.kind, v.what) == ("exception", "InvariantViolation")          # not declared a finding type
