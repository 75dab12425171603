"""The registration-model comparison: the index-model generations hold, backing-id breaks
IDX-PRIMARY and IDX-LOOKUP when log indices pass through, and translation repairs it; each broken
invariant comes with a shrunk counterexample; a file striped over a device missing on the node
may fail cleanly, a file on present devices may not."""
from __future__ import annotations

import errno

import pytest

from harness.cases.node import NodeView, node_case
from harness.ops.compare import compare
from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.errors import FamfsError
from harness.gen.spec import AddDaxdev, Create, Device, Spec, build
from harness.oracle.invariants import Invariant, InvariantViolation
from harness.oracle.lookups import LookupChecker

MiB = 1 << 20


@pytest.mark.slow
def test_compare_abi():
    rows = {r.abi: r for r in compare(cases=60, seed=3, shrink_steps=150)}
    assert rows["pull-devt"].failing == 0 and rows["pull-name"].failing == 0
    broken = rows["backing-id"].by_invariant
    assert broken.get("IDX-PRIMARY", 0) > 0 and broken.get("IDX-LOOKUP", 0) > 0
    assert rows["backing-id (translated)"].failing == 0
    assert rows["backing-id (translated)"].as_dict()["id_map_entries_per_case"] > 0
    assert all(r.lookups > 0 for r in rows.values() if r.failing == 0)
    for row in rows.values():
        assert set(row.minimal) == set(row.by_invariant), row.abi
        for what, m in row.minimal.items():
            assert len(m["input"]) <= len(row.smallest[what])
            assert m["famfs"].startswith(("2 devices", "3 devices", "4 devices")), m["famfs"]
    # backing-id: one file on index 0 is enough to lose the primary (the allocator starts at 1)
    assert "on index 0" in rows["backing-id"].minimal["IDX-PRIMARY"]["famfs"]


def striped_over_a_missing_device() -> Spec:
    """dev1 is missing on the node: 'short' is striped over indices 0 and 1 but all its bytes lie
    in the first chunk (on index 0); 'late' lives on index 2, present."""
    devices = tuple(Device(bytes([0x10 + i]) * 16, 64 * MiB) for i in range(3))
    return Spec(devices, (AddDaxdev(1), AddDaxdev(2), Create("short", 4096, strips=(0, 1)),
                          Create("late", 1, devindex=2)))


@pytest.mark.parametrize("abi", ["pull-name", "pull-devt", "push-fd"])
def test_a_file_striped_over_a_missing_device_may_fail_cleanly(abi):
    """pull reads 'short' (only index 0 is touched); push-fd refuses it with EIO at GET_FMAP
    (it references an index never pushed). Both are correct for a file on a missing device:
    the oracle's node case passes with no unjustified lookup, and a direct read shows which of
    the two happened."""
    spec = striped_over_a_missing_device()
    spec = Spec(spec.devices, tuple(op for op in spec.ops if getattr(op, "path", "") != "late"))
    view = NodeView(order=(0, 1, 2), missing=frozenset({1}))
    counts = node_case(build(spec, data="stamp"), None, view, abi=abi)
    assert counts.unjustified == 0

    built = build(spec, data="stamp")
    devices = [DaxDevice.in_memory(built.devices[i], f"dax{k}.0", node="n") for k, i in enumerate((0, 2))]
    seen = LookupChecker()                                  # records the kernel side's lookups
    daemon = Daemon.mount(Resolver("n", devices), abi=abi, probe=seen, primary=devices[0])
    ino = daemon.ino_of("short")
    assert ino is not None
    if abi == "push-fd":
        with pytest.raises(FamfsError) as refused:
            daemon.read(ino, 0, 4096)
        assert refused.value.errno == errno.EIO
        assert all(ev.index != 1 for ev in seen.lookups)
    else:
        strip = built.image.expected.files["short"].fmap.strips[0]
        assert bytes(daemon.read(ino, 0, 4096)) == bytes(built.devices[0][strip.offset:strip.offset + 4096])
        assert {ev.index for ev in seen.lookups} == {0} and all(ev.errno == 0 for ev in seen.lookups)
    assert counts.ok == (0 if abi == "push-fd" else len(seen.lookups))


def test_push_fd_stopping_at_the_missing_device_is_data_loss():
    """push-fd marks 'short' bad (a clean EIO: it references the missing index), but it also
    never pushes index 2, so 'late', whose device is present, cannot be read: DATA."""
    view = NodeView(order=(0, 1, 2), missing=frozenset({1}))
    with pytest.raises(InvariantViolation) as v:
        node_case(build(striped_over_a_missing_device(), data="stamp"), None, view, abi="push-fd")
    assert v.value.invariant == Invariant.DATA and "'late'" in str(v.value)
