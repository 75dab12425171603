"""The daemon and the kernel side together, without a mount: lazy discovery per ABI generation,
data through GET_FMAP + the daxdev table, several nodes, a client's logplay, the lookup probe."""
from __future__ import annotations

import errno

import pytest

from harness.famfs.daemon import Daemon, DaemonError
from harness.famfs.resolver import Resolver
from harness.famfs.image import pattern
from harness.famfs.invariants import Invariant
from harness.famfs.kernel import KernelError
from harness.oracle.invariants import InvariantViolation
from tests.common.nodes import MiB, cluster

INDEX_MODEL_ABIS = ["pull-name", "pull-devt", "push-fd"]
FILES = {"d/a": 1, "c": 2, "z": 0}          # single-device files and the index they live on


@pytest.fixture
def two_nodes():
    c = cluster()
    c.add_node("A", [0, 1, 2])
    c.add_node("B", [2, 0, 1])            # same memory, other local names and dev_t
    yield c
    c.close()


def read_all(d: Daemon, path: str, chunk: int = 128 << 10) -> bytes:
    ino = d.ino_of(path)
    parent, _, name = path.rpartition("/")
    assert d.lookup(d.ino_of(parent), name) is not None
    size = d.getattr(ino).size
    return b"".join(d.read(ino, off, chunk) for off in range(0, size, chunk))


@pytest.mark.parametrize("abi", INDEX_MODEL_ABIS)
def test_lazy_discovery_index_appears_when_first_read(two_nodes, abi):
    d = two_nodes.daemon("A", abi)
    assert d.kernel.discovered() == [0], "only the primary is known at mount"
    read_all(d, "d/a")                                   # lives on index 1
    assert d.kernel.discovered() == [0, 1]
    read_all(d, "z")                                     # index 0 again: nothing new
    assert d.kernel.discovered() == [0, 1]
    read_all(d, "c")                                     # index 2
    assert d.kernel.discovered() == [0, 1, 2]


@pytest.mark.parametrize("abi", ["pull-name", "pull-devt"])
def test_pull_discovers_exactly_the_referenced_index(two_nodes, abi):
    d = two_nodes.daemon("A", abi)
    read_all(d, "c")                                     # index 2 only: pull asks for 2, not 1
    assert d.kernel.discovered() == [0, 2]


def test_push_fd_pushes_densely(two_nodes):
    d = two_nodes.daemon("A", "push-fd")
    read_all(d, "c")                                     # index 2: push 1 then 2, in order (b2988b5)
    assert d.kernel.discovered() == [0, 1, 2]


@pytest.mark.parametrize("abi", INDEX_MODEL_ABIS)
@pytest.mark.parametrize("node", ["A", "B"])
def test_every_file_reads_its_bytes_and_every_lookup_is_checked(two_nodes, abi, node):
    probe = two_nodes.checker()
    d = two_nodes.daemon(node, abi, probe=probe)
    for f in two_nodes.built.image.expected.files.values():
        assert read_all(d, f.path) == pattern(f.path, f.size), f.path
    assert probe.check() == d.kernel.lookups > 0


def test_odd_offsets_and_lengths(two_nodes):
    d = two_nodes.daemon("A")
    f = two_nodes.built.image.expected.files["d/big"]
    want = pattern(f.path, f.size)
    ino = d.ino_of(f.path)
    for off, n in [(0, 1), (1, 4095), (2 * MiB - 3, 7), (4 * MiB + 11, 3 * MiB), (f.size - 5, 100), (f.size, 10)]:
        assert d.read(ino, off, n) == want[off:off + n], (off, n)


def test_zero_copy_reads_the_same_bytes_through_the_same_lookups(two_nodes):
    """The FUSE adapter's read: the bytes and probe-checked lookups of a copying read; where one
    run covers the read, a view of the DAX memory itself."""
    probe = two_nodes.checker()
    d = two_nodes.daemon("A", probe=probe)
    for f in two_nodes.built.image.expected.files.values():
        ino = d.ino_of(f.path)
        for off in range(0, f.size, 768 << 10):
            assert d.read(ino, off, 1 << 20, zero_copy=True) == d.read(ino, off, 1 << 20), (f.path, off)
    assert probe.check() == d.kernel.lookups > 0
    big = d.ino_of("d/big")                              # 2 MiB chunks striped over indices 2, 1
    assert isinstance(d.read(big, 2 * MiB - 3, 7, zero_copy=True), bytes)
    c = two_nodes.built.image.expected.files["c"]       # one extent on index 2 (local dax2.0)
    view = d.read(d.ino_of("c"), 0, 4, zero_copy=True)
    two_nodes.nodes["A"][2].write(c.fmap.extents[0].offset, b"new!")
    assert view == b"new!"
    view.release()


def test_two_nodes_agree_on_every_index(two_nodes):
    probe = two_nodes.checker()
    a = two_nodes.daemon("A", probe=probe)
    b = two_nodes.daemon("B", probe=probe)
    for f in two_nodes.built.image.expected.files.values():
        assert read_all(a, f.path) == read_all(b, f.path)
    assert probe.check() == a.kernel.lookups + b.kernel.lookups
    assert len(probe.cluster) == 3                      # all three indices seen, one UUID each


def test_backing_id_breaks_the_index_model(two_nodes):
    """Kernel-allocated ids never give 0 and follow discovery order: passing log indices through
    reads the wrong device or none (IDX-PRIMARY, IDX-LOOKUP); translating repairs it."""
    probe = two_nodes.checker()
    d = two_nodes.daemon("A", "backing-id", probe=probe)
    assert d.kernel.discovered() == [1], "the primary got id 1, not 0"
    with pytest.raises(KernelError) as e:
        read_all(d, "b")                                 # its first chunk is on index 0: no slot 0
    assert e.value.errno == errno.EIO
    with pytest.raises(InvariantViolation) as v:         # the primary's lookup failed: no cause for it
        probe.check()
    assert v.value.invariant == Invariant.IDX_PRIMARY
    read_all(d, "d/a")                                   # index 1 = the primary's id: wrong device
    with pytest.raises(InvariantViolation) as v:
        probe.check()
    assert v.value.invariant == Invariant.IDX_LOOKUP
    fixed = two_nodes.daemon("A", "backing-id", probe=two_nodes.checker(), translate_ids=True)
    for f in two_nodes.built.image.expected.files.values():
        assert read_all(fixed, f.path) == pattern(f.path, f.size)


def test_without_rawio_famfs_files_cannot_be_read(two_nodes):
    d = two_nodes.daemon("A", capable_rawio=False)
    assert d.getattr(d.ino_of("c")) is not None        # metadata still served
    with pytest.raises(KernelError) as e:
        read_all(d, "c")
    assert e.value.errno == errno.EOPNOTSUPP


def test_missing_secondary_fails_its_files_cleanly(two_nodes):
    views = two_nodes.nodes["A"]
    host = Resolver("A", views[:2])                      # index 2's device is absent on this node
    d = Daemon.mount(host, abi="pull-devt", primary=views[0])
    assert d.devices[2] is None
    with pytest.raises(KernelError) as e:
        read_all(d, "c")
    assert e.value.errno == errno.EIO
    assert read_all(d, "d/a") == pattern("d/a", 3 * MiB)   # the rest is served
    with pytest.raises(DaemonError) as m:
        d.get_daxdev(2)
    assert m.value.invariant == Invariant.IDX_RESOLVE
    with pytest.raises(DaemonError) as u:
        d.get_daxdev(7)
    assert u.value.invariant == Invariant.IDX_DEFINED_BEFORE_USE


def test_client_logplay_picks_up_master_appends(two_nodes):
    client = two_nodes.daemon("B")
    before = set(client.by_path)
    ino_b = client.ino_of("b")
    master = two_nodes.built.image                       # the master appends on the shared memory
    master.rebind([two_nodes.shared[i].view(0, two_nodes.shared[i].size) for i in range(3)])
    f = master.create("late", 2 * MiB + 1, devindex=2)
    assert "late" not in client.by_path
    client.refresh()
    assert set(client.by_path) == before | {"late"}
    assert client.ino_of("b") == ino_b, "existing inodes keep their numbers"
    assert read_all(client, "late") == pattern("late", f.size)


def test_meta_files(two_nodes):
    d = two_nodes.daemon("A")
    sb = d.read(d.ino_of(".meta/.superblock"), 0, 8)
    assert int.from_bytes(sb, "little") == 0x87B282FF
    assert d.getattr(d.ino_of(".meta/.log")).mode & 0o777 == 0o444   # a client's log is read-only
