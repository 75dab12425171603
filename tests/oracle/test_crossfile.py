"""fsck against the model's cross-file answer: overlaps per daxdev and extents past a device's end."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.famfs.replay import replay
from harness.gen.corrupt import set_field
from harness.gen.region import base_spec
from harness.gen.spec import build
from harness.gen.strategies import specs
from harness.oracle.crossfile import check_fsck, expect
from harness.oracle.invariants import Invariant, InvariantViolation
from harness.oracle.model import verdict


def _accepted(built):
    head = bytes(built.primary[: (2 << 20) + built.spec.log_len])
    return verdict(head, len(built.primary)), replay(head, device_size=len(built.primary))


def _log_end(r):
    return r.superblock.log_offset + r.superblock.log_len


def test_a_clean_image_has_no_cross_file_finding():
    built = build(base_spec(), data="stamp")
    want, got = _accepted(built)
    assert expect(want, _log_end(got), [len(d) for d in built.devices]).overlaps == ()
    assert check_fsck(want, got, _log_end(got), [len(d) for d in built.devices]) == 0


def test_two_files_on_one_allocation_are_one_overlap_on_that_daxdev():
    built = build(base_spec(), data="stamp")
    d_f = replay(built.primary).namespace.files["d/f"]
    set_field(built.primary, "file_meta", "se0_offset", d_f.fmap.extents[0].offset, 3)   # "g" onto d/f
    set_field(built.primary, "file_meta", "se0_devindex", 0, 3)
    want, got = _accepted(built)
    assert "g" in got.namespace.files
    sizes = [len(d) for d in built.devices]
    assert expect(want, _log_end(got), sizes).overlaps == ((0, 1),)
    assert check_fsck(want, got, _log_end(got), sizes) == 1
    small = [sizes[0], 4 << 20]                       # this node's daxdev 1 is smaller than the log says
    assert [p for p, _ in expect(want, _log_end(got), small).out_of_bounds] == ["s"]
    assert check_fsck(want, got, _log_end(got), small) == 2


def test_an_fsck_that_misses_an_overlap_is_ext_overlap(monkeypatch):
    import harness.famfs.fsck as fsck_module
    built = build(base_spec(), data="stamp")
    d_f = replay(built.primary).namespace.files["d/f"]
    set_field(built.primary, "file_meta", "se0_offset", d_f.fmap.extents[0].offset + (1 << 21), 3)
    set_field(built.primary, "file_meta", "se0_devindex", 0, 3)
    want, got = _accepted(built)
    real = fsck_module.fsck

    def blind(result, sizes=()):
        report = real(result, sizes)
        report.findings = [f for f in report.findings if f.invariant != Invariant.EXT_OVERLAP]
        return report
    monkeypatch.setattr(fsck_module, "fsck", blind)
    with pytest.raises(InvariantViolation) as v:
        check_fsck(want, got, _log_end(got), [len(d) for d in built.devices])
    assert v.value.invariant == Invariant.EXT_OVERLAP


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs(max_devices=4), st.integers(0, 2 ** 32), st.integers(0, 3))
def test_fsck_agrees_with_the_model_on_moved_extents(spec, seed, moves):
    """Extents moved onto each other (resealed) in generated images: fsck == the model."""
    from harness.gen.corrupt import entries, entry_type
    built = build(spec, data="stamp")
    rng = random.Random(seed)
    files = [k for k, e in enumerate(entries(built.primary)) if entry_type(e) == 0]
    for _ in range(moves if files else 0):
        set_field(built.primary, "file_meta", "se0_offset", rng.randrange(1, 16) << 21, rng.choice(files))
    want, got = _accepted(built)
    check_fsck(want, got, _log_end(got), [len(d) for d in built.devices])
