"""The daemon session's reads go through the oracle's one read check (`oracle.case.check_files`):
a clean read judges its lookups; a daemon that returns wrong bytes, or fails a read on a present
device, is a finding of the right invariant."""
from __future__ import annotations

import errno

import pytest

from harness.cases.session import MiB, Session
from harness.famfs.errors import FamfsError
from harness.famfs.invariants import Invariant
from harness.oracle.invariants import InvariantViolation


def _session() -> Session:
    s = Session()
    s.add_device()
    s.create(3 * MiB, 1, False)                 # a file on index 1: node B calls that device dax1.0
    s.create(2 * MiB + 1, 0, True)              # striped over both
    for node in ("A", "B"):
        s.logplay(node)
    return s


def test_a_clean_session_read_judges_every_lookup() -> None:
    s = _session()
    for node in ("A", "B"):
        for pick in (0, 1):
            s.read(node, pick)
    s.check()
    assert s.lookups.ok > 0 and s.lookups.unjustified == 0


def test_wrong_bytes_and_a_failed_read_are_findings(monkeypatch) -> None:
    s = _session()
    d = s.daemons["B"]
    real = d.read

    def flipped(ino: int, offset: int, length: int, **kw: object) -> bytes:
        data = bytearray(real(ino, offset, length))
        data[-1] ^= 0xFF
        return bytes(data)

    monkeypatch.setattr(d, "read", flipped)
    with pytest.raises(InvariantViolation) as e:
        s.read("B", 0)
    assert e.value.invariant == Invariant.DATA

    def failing(ino: int, offset: int, length: int, **kw: object) -> bytes:
        raise FamfsError(errno.EIO, Invariant.IDX_LOOKUP, "planted")

    monkeypatch.setattr(d, "read", failing)
    with pytest.raises(InvariantViolation) as e:
        s.read("B", 1)
    assert e.value.invariant == Invariant.DATA and "device is present" in str(e.value)
