"""The oracle: the reference model agrees with replay on corrupted images; the lookup checker
names TBL-PUBLISH, IDX-LOOKUP and IDX-CLUSTER; the wire rules match the kernel side."""
from __future__ import annotations

import errno
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.famfs import wire
from harness.famfs.daxtable import DaxdevTable
from harness.famfs.errors import FamfsError
from harness.famfs.replay import replay
from harness.gen.corrupt import FAMILIES, corrupt
from harness.gen.region import base_spec
from harness.gen.spec import build
from harness.gen.strategies import specs
from harness.oracle.case import check_replay
from harness.oracle.invariants import CATALOG, Invariant, InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker, Why
from harness.oracle.model import verdict
from harness.oracle.wire_rules import reasons


def test_catalog_covers_every_invariant():
    assert set(CATALOG) == set(Invariant)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs(max_devices=4), st.integers(0, 2 ** 32), st.sampled_from([None, *FAMILIES]))
def test_model_agrees_with_replay_on_corrupted_images(spec, seed, family):
    built = build(spec, data="stamp")
    c = corrupt(built.primary, random.Random(seed), family)
    check_crc = c.check_crc if c else True
    head = bytes(built.primary[: (2 << 20) + spec.log_len])
    try:
        got: object = replay(head, device_size=len(built.primary), check_crc=check_crc)
    except FamfsError as e:
        got = e
    check_replay(verdict(head, len(built.primary), check_crc=check_crc), got)


class Dev:
    def __init__(self, name: str, devno: int):
        self.name, self.devno = name, devno


def test_tbl_publish_valid_flag_before_fields():
    table = DaxdevTable(4)
    table.set_valid(2)                      # the fault: valid set before the fields were written
    view = table.read_slot(2)
    checker = LookupChecker(expected={2: "u2"}, names={"n": {"dax2.0": "u2"}})
    checker.lookup("n", 2, view.name, view.devno, 0)
    with pytest.raises(InvariantViolation) as v:
        checker.check()
    assert v.value.invariant == Invariant.TBL_PUBLISH


def test_idx_lookup_wrong_device():
    checker = LookupChecker(expected={1: "u1"}, names={"n": {"dax0.0": "u0", "dax1.0": "u1"}})
    checker.lookup("n", 1, "dax1.0", 7, 0)
    assert checker.check() == 1
    checker.lookup("n", 1, "dax0.0", 7, 0)
    with pytest.raises(InvariantViolation) as v:
        checker.check()
    assert v.value.invariant == Invariant.IDX_LOOKUP


def test_idx_cluster_nodes_disagree():
    """Each node checked against the log at the time: the log said u1 when A looked, u9 when B
    did (a rewritten log): the nodes disagree, IDX-CLUSTER."""
    checker = LookupChecker(expected={1: "u1"}, names={"A": {"dax0.0": "u1"}, "B": {"dax0.0": "u9"}})
    checker.lookup("A", 1, "dax0.0", 7, 0)
    checker.check()
    checker.expected = {1: "u9"}
    checker.lookup("B", 1, "dax0.0", 8, 0)
    with pytest.raises(InvariantViolation) as v:
        checker.check()
    assert v.value.invariant == Invariant.IDX_CLUSTER


def test_an_undefined_index_that_resolves_is_a_finding():
    checker = LookupChecker(expected={0: "u0"}, names={"n": {"dax0.0": "u0", "dax1.0": "u1"}})
    checker.lookup("n", 1, "dax1.0", 7, 0)
    with pytest.raises(InvariantViolation) as v:
        checker.check()
    assert v.value.invariant == Invariant.IDX_LOOKUP and "does not define" in str(v.value)


def test_failed_lookups_are_justified_or_findings():
    checker = LookupChecker(expected={0: "u0", 1: "u1", 2: "u2"}, names={"n": {"dax0.0": "u0"}})
    checker.lookup("n", 5, None, 0, errno.EIO)                # undefined: justified
    checker.allow("n", 1, Why.MISSING)
    checker.lookup("n", 1, None, 0, errno.EIO)                # missing here: justified
    assert checker.check() == 2 and checker.counts == Counts(0, 2, 0)
    checker.lookup("n", 2, None, 0, errno.EIO)                # defined, present, nothing in force
    with pytest.raises(InvariantViolation) as v:
        checker.check()
    assert v.value.invariant == Invariant.IDX_LOOKUP and checker.counts.unjustified == 1
    checker.lookup("n", 1, None, 0, errno.ENODEV)             # justified cause, wrong errno
    with pytest.raises(InvariantViolation):
        checker.check()
    checker.clear("n", 1)                                     # the cause is gone: must succeed
    checker.lookup("n", 1, None, 0, errno.EIO)
    with pytest.raises(InvariantViolation):
        checker.check()
    checker.lookup("n", 0, None, 0, errno.EIO)                # the primary never fails unjustified
    with pytest.raises(InvariantViolation) as v:
        checker.check()
    assert v.value.invariant == Invariant.IDX_PRIMARY


@pytest.mark.parametrize("gen", list(wire.ABIS.values()), ids=list(wire.ABIS))
def test_wire_rules_accept_what_famfs_sends(gen):
    built = build(base_spec(), data="stamp")
    for f in replay(built.primary).namespace.files.values():
        msg = wire.encode_fmap(wire.fmap_from_file(f, gen), gen)
        assert reasons(msg, gen) == [], (gen.name, f.path)
    assert reasons(b"\0" * 31, gen)


def test_data_wrong_bytes_are_found():
    """DATA: the bytes a read returns differ from what lies at the file's extents."""
    from harness.oracle.case import check_reads
    from harness.oracle.model import verdict
    from tests.common.nodes import cluster
    c = cluster()
    try:
        c.add_node("A", [0, 1, 2])
        checker = c.checker()
        d = c.daemon("A", probe=checker)
        primary = c.built.devices[0]
        expected = verdict(bytes(primary[: (2 << 20) + c.built.spec.log_len]), len(primary))
        bufs = [bytearray(b) for b in c.built.devices]
        assert check_reads(d, expected, bufs, checker) > 0          # the truth: clean
        f = c.built.image.expected.files["c"]
        bufs[2][f.fmap.extents[0].offset + 7] ^= 0xFF                 # the model now expects other bytes
        with pytest.raises(InvariantViolation) as v:
            check_reads(d, expected, bufs, checker)
        assert v.value.invariant == Invariant.DATA
    finally:
        c.close()


def _strip_need_by_chunks(size: int, chunk: int, n: int) -> list[int]:
    """What each strip must hold, walked chunk by chunk (the slow, obvious way)."""
    need, c = [0] * n, 0
    while c * chunk < size:
        need[c % n] = (c // n) * chunk + min(chunk, size - c * chunk)
        c += 1
    return need


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1 << 22), st.sampled_from([4096, 8192, 1 << 16, 1 << 21]), st.integers(1, 16),
       st.integers(0, 15), st.booleans())
def test_strip_need_closed_form_matches_the_chunk_walk(size, chunk, n, short, one_short):
    """The model's closed form accepts an interleave exactly when every strip holds what the
    chunk-by-chunk walk says it must."""
    from harness.famfs import layout as L
    from harness.oracle.model import _fmap_extents
    need = _strip_need_by_chunks(size, chunk, n)
    lens = [max(4096, -(-x // 4096) * 4096) for x in need]
    k = short % n
    if one_short and lens[k] - 4096 >= 4096:
        lens[k] -= 4096
    fm = L.InterleavedFmap.of(chunk, [L.SimpleExtent(0, (2 + 64 * j) << 20, ln) for j, ln in enumerate(lens)])
    accepted = _fmap_extents(fm, size, 4096) is not None
    assert accepted == all(ln >= x for ln, x in zip(lens, need, strict=True))


def test_a_huge_interleaved_file_is_judged_without_walking_its_chunks():
    """A 2^60-byte striped file: the model answers at once (it once looped per chunk for minutes)."""
    from harness.famfs import layout as L
    from harness.oracle.model import _fmap_extents
    fm = L.InterleavedFmap.of(1 << 21, [L.SimpleExtent(0, 2 << 20, 1 << 40)] * 4)
    assert _fmap_extents(fm, 1 << 60, 1 << 21) is None               # strips far too short
    assert _fmap_extents(fm, 1 << 42, 1 << 21) is not None           # exactly 2^40 per strip


@pytest.mark.parametrize("chunk, servable", [(1 << 31, True), (1 << 32, False), (1 << 40, False)])
def test_chunk_size_is_bounded_by_the_wire_field(chunk, servable):
    """GET_FMAP carries the chunk size in 32 bits: a chunk of 2^32 or more is refused by replay and
    the model alike (FMAP-SHAPE), never listed and then unreadable; 2^31 is served and read."""
    from harness.cases.node import NodeView, node_case
    from harness.gen.corrupt import set_field
    built = build(base_spec(), data="stamp")
    s = 4                                                            # entry 4: "s", striped over 0 and 1
    set_field(built.primary, "file_meta", "size", 4096, s)
    set_field(built.primary, "interleave_meta", "chunk_size", chunk, s)
    head = bytes(built.primary[: (2 << 20) + built.spec.log_len])
    expected = verdict(head, len(built.primary))
    got = replay(head, device_size=len(built.primary))
    check_replay(expected, got)
    rejected = {e.entry: e.invariant.value for e in got.rejections}
    assert ("s" in got.namespace.files) == servable
    assert rejected.get(s) == (None if servable else "FMAP-SHAPE")
    assert node_case(built, None, NodeView("n", (0, 1))) > 0           # every listed file reads right
