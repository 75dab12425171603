"""The oracle's judgement of failures: every failed lookup needs a cause from the model, a file
on a missing device fails only in the ranges on it (pull generations), lazy discovery is retried
once the cause is gone, internal errors become findings with famfs frames, signatures carry the
site, and the runner counts ok / justified / unjustified lookups."""
from __future__ import annotations

import errno

import pytest

from harness.cases.node import NodeView, node_case
from harness.cases.wire_reply import wire_case
from harness.tools.probelog import JsonlProbe, load, replay_into
from harness.engine.registry import Target
from harness.engine.runner import CaseRunner
from harness.engine.signature import Signature, frames_of_text
from harness.famfs import wire
from harness.famfs.kernel import KernelError
from harness.gen.spec import AddDaxdev, Create, Device, Spec, build
from harness.oracle.case import Expectation, check_files, daemon_reader, ranges
from harness.oracle.invariants import Invariant, InvariantViolation
from harness.oracle.lookups import Counts, InternalFinding, LookupChecker, Why
from harness.oracle.model import verdict
from tests.common.nodes import cluster

MiB = 1 << 20


def striped_spec() -> Spec:
    """dev1 will be missing: 'wide' is striped over 0 and 1 (chunks on 0 must read), 'solo' on 2."""
    devices = tuple(Device(bytes([0x20 + i]) * 16, 64 * MiB) for i in range(3))
    return Spec(devices, (AddDaxdev(1), AddDaxdev(2), Create("wide", 7 * MiB, strips=(0, 1)),
                          Create("solo", 3 * MiB, devindex=2)))


def test_ranges_follow_extents_and_chunks():
    assert ranges(5, [(0, 8192, 4096), (1, 0, 4096)], None) == [(0, 5, 0, 8192)]
    assert ranges(5000, [(0, 8192, 4096), (1, 0, 4096)], None) == [(0, 4096, 0, 8192), (4096, 904, 1, 0)]
    got = ranges(5 * MiB, [(0, 10 * MiB, 4 * MiB), (1, 20 * MiB, 4 * MiB)], 2 * MiB)
    assert got == [(0, 2 * MiB, 0, 10 * MiB), (2 * MiB, 2 * MiB, 1, 20 * MiB), (4 * MiB, MiB, 0, 12 * MiB)]


@pytest.mark.parametrize("abi", ["pull-name", "pull-devt"])
def test_pull_generations_read_the_present_chunks_of_a_file_on_a_missing_device(abi):
    view = NodeView(order=(0, 1, 2), missing=frozenset({1}))
    counts = node_case(build(striped_spec(), data="stamp"), None, view, abi=abi)
    assert counts.justified > 0 and counts.ok > 0 and counts.unjustified == 0


def test_a_present_chunk_that_fails_is_data():
    """The kernel fails every chunk of 'wide' (as if it marked the file bad under a pull ABI):
    the chunks on index 0 must read, so the judgement is DATA at the pull site."""
    c = cluster(striped_spec())
    try:
        c.add_node("A", [0, 2])                       # dev1 missing on A
        built = c.built
        expected = verdict(bytes(built.primary[: (2 << 20) + built.spec.log_len]), len(built.primary))
        d = c.daemon("A")
        exp = Expectation.of(expected, "A", {"dax0.0": built.devices[0], "dax1.0": built.devices[2]},
                             primary="dax0.0")
        assert exp.why == {1: Why.MISSING}
        checker = exp.checker()
        d.probe = d.kernel.probe = checker
        real = daemon_reader(d)

        def bad(path, off, n):
            if path == "wide":
                raise KernelError(errno.EIO, Invariant.IDX_LOOKUP, "file marked bad")
            return real(path, off, n)
        with pytest.raises(InvariantViolation) as v:
            check_files(expected.namespace, exp, bad, checker)
        assert v.value.invariant == Invariant.DATA and v.value.where == "read@pull-devt/interleave"
        assert check_files(expected.namespace, exp, real, checker).unjustified == 0
    finally:
        c.close()


def test_push_fd_may_fail_the_whole_file():
    view = NodeView(order=(0, 1, 2), missing=frozenset({1}))
    spec = striped_spec()
    spec = Spec(spec.devices, spec.ops[:3])            # no 'solo' (push-fd stops at the gap: DATA)
    assert node_case(build(spec, data="stamp"), None, view, abi="push-fd") >= 0


def test_discovery_is_retried_once_the_cause_is_gone():
    """dev2 vanished at mount: 'solo' fails (justified: fault); the fault lifted, the daemon
    replays, and the next read pulls index 2 again and succeeds (no re-pull of the fmap)."""
    c = cluster(striped_spec())
    try:
        views = c.add_node("A", [0, 1, 2])
        views[2].vanished = True
        d = c.daemon("A")
        ino = d.ino_of("solo")
        with pytest.raises(KernelError):
            d.read(ino, 0, 4096)
        assert ino in d.kernel.fmaps                                   # the fmap is cached...
        views[2].vanished = False
        d.host.rescan()
        d.refresh()
        assert d.read(ino, 0, 4096) == bytes(c.built.devices[2][
            c.built.image.expected.files["solo"].fmap.extents[0].offset:][:4096])   # ...and retried
    finally:
        c.close()


def test_recovery_after_a_fault_is_checked_by_node_case():
    def vanish(devices):
        devices[2].vanished = True
        return 2
    view = NodeView(order=(0, 1, 2))
    counts = node_case(build(striped_spec(), data="stamp"), None, view, fault=vanish, recover=True)
    assert counts.justified > 0 and counts.unjustified == 0


def test_wire_case_checks_bytes_and_errors():
    gen = wire.abi("pull-devt")
    good = wire.FmapMessage(0, wire.EXT_SIMPLE, 8192, extents=(wire.WireSimple(1, 4 << 20, 2 << 20),))
    assert wire_case(list(wire.ABIS).index("pull-devt"), wire.encode_fmap(good, gen)) > 0
    gone = wire.FmapMessage(0, wire.EXT_SIMPLE, 8192, extents=(wire.WireSimple(7, 4 << 20, 2 << 20),))
    counts = wire_case(list(wire.ABIS).index("pull-devt"), wire.encode_fmap(gone, gen))
    assert counts.justified > 0 and counts.ok == 0     # index 7: no device answers, clean EIO


def test_internal_error_from_a_probe_log_is_a_finding_with_famfs_frames(tmp_path):
    log = tmp_path / "p.jsonl"
    probe = JsonlProbe(str(log))
    try:
        wire.decode_fmap(None, wire.abi("pull-devt"))   # a TypeError inside famfs
    except Exception as e:  # noqa: BLE001 - the test makes one
        probe.internal_error("read", e)
    probe.close()
    checker = LookupChecker(site="mount")
    replay_into(checker, load(str(log)))
    with pytest.raises(InternalFinding) as f:
        checker.check()
    sig = Signature.from_exception(f.value)
    assert sig.kind == "internal-error" and sig.what == "TypeError" and sig.site == "read"
    assert sig.frames and all(fr.startswith("harness/famfs/") for fr in sig.frames)
    assert "wire.py:decode_fmap" in sig.frames[-1] or any("wire.py" in fr for fr in sig.frames)


def test_frames_of_text_ignore_the_checkout_location():
    a = 'Traceback:\n  File "/x/a/harness/famfs/kernel.py", line 3, in read_steps\n    z\n'
    b = 'Traceback:\n  File "/tmp/other/harness/famfs/kernel.py", line 99, in read_steps\n    z\n'
    assert frames_of_text(a) == frames_of_text(b) == ["harness/famfs/kernel.py:read_steps"]


def test_signature_tells_sites_apart():
    a = Signature.from_exception(InvariantViolation(Invariant.DATA, "x 12", op="read", site="pull-devt/simple"))
    b = Signature.from_exception(InvariantViolation(Invariant.DATA, "x 99", op="read", site="pull-devt/interleave"))
    c = Signature.from_exception(InvariantViolation(Invariant.DATA, "y 1", op="read", site="pull-devt/simple"))
    assert a.key != b.key and a.key == c.key and "read@pull-devt/simple" in a.title
    assert Signature.from_dict(a.as_dict()) == a


def test_runner_counts_lookup_classes_and_internal_errors():
    def one(data: bytes):
        if data == b"boom":
            checker = LookupChecker()
            try:
                raise ValueError("handler bug")
            except ValueError as e:
                checker.internal_error("read", e)
            checker.check()
        return Counts(3, 2, 0)
    runner = CaseRunner(Target(name="t", one_input=one), repro_times=0)
    runner.run_one(b"x")
    runner.run_one(b"boom")
    d = runner.stats.as_dict()
    assert (d["lookups_checked"], d["lookups_ok"], d["lookups_justified"], d["lookups_unjustified"]) == (5, 3, 2, 0)
    assert d["internal_errors"] == 1 and len(d["internal_signatures"]) == 1
    assert next(iter(d["internal_signatures"].values())).startswith("internal-error ValueError")


@pytest.mark.parametrize("abi", ["pull-name", "pull-devt", "push-fd"])
def test_a_file_past_the_kernel_table_may_be_refused_whole_with_einval(abi):
    """The log allows 64 daxdevs; a kernel generation's table may hold fewer (24 slots in the
    V-series). A file on index >= its slots is refused at GET_FMAP (EINVAL), every range of it:
    justified, and judged by the oracle as such (a nightly found the earlier oracle calling it
    IDX-LOOKUP)."""
    slots = wire.ABIS[abi].nslots
    n = slots + 1
    devices = tuple(Device(bytes([0x40 + (i % 200), i]) * 8, 8 * MiB if i else 64 * MiB) for i in range(n))
    spec = Spec(devices, tuple(AddDaxdev(i) for i in range(1, n))
                + (Create("low", MiB, devindex=1), Create("high", MiB, devindex=slots)))
    built = build(spec, data="stamp")
    exp = Expectation.of(verdict(built.primary[: (2 << 20) + spec.log_len], len(built.primary)), "n",
                         {f"dax{i}.0": b for i, b in enumerate(built.devices)}, primary="dax0.0", abi=abi)
    assert exp.file_may_fail({slots}) == Why.BEYOND_TABLE and exp.file_may_fail({1}) is None
    counts = node_case(built, None, NodeView("n", tuple(range(n))), abi=abi)
    assert counts.unjustified == 0 and counts.ok > 0


def test_a_range_is_compared_in_place_at_its_offset():
    from harness.oracle.case import _same_at
    dev = bytearray(range(256)) * 16
    got = memoryview(bytes(dev[100:300]))
    assert _same_at(dev, 100, 200, got) and _same_at(bytes(dev), 100, 200, got)
    assert not _same_at(dev, 101, 200, got)                  # the same bytes one off
    assert not _same_at(dev, 100, 201, got)                  # a short read
    assert not _same_at(dev, len(dev) - 100, 200, memoryview(bytes(200)))   # past the device's end
    assert _same_at(memoryview(dev), 100, 200, got)          # a view: compared through a slice


def test_a_view_of_the_expected_memory_itself_is_the_same_and_any_other_view_is_compared():
    """A zero-copy read that is a view of the model's buffer at the model's offset holds those very
    bytes; a view of the same buffer at another offset is compared byte for byte, and differs
    wherever the bytes do."""
    from harness.oracle import case
    dev = bytearray(range(256)) * 16
    at = memoryview(dev)[100:300]
    assert case._address(at) == case._address(dev) + 100
    assert case._same_at(dev, 100, 200, at)
    assert not case._same_at(dev, 101, 200, at)              # the right buffer, one byte off
    assert not case._same_at(dev, 99, 200, memoryview(dev)[98:298])
    assert case._same_at(dev, 100, 200, memoryview(dev)[356:556])    # elsewhere, equal bytes (period 256)
    assert not case._same_at(dev, 100, 199, at)              # a read of the wrong length
    ro = memoryview(bytes(dev))[100:300]                      # read-only: no address, compared
    assert case._address(ro) is None and case._same_at(dev, 100, 200, ro)
    assert case._address(memoryview(dev)[100:500:2]) is None    # not contiguous: no address
    at.release()
    dev.extend(b"x")                                          # no export of `dev` was left behind
