"""Tests for harness/famfs/devices.py: DAX backends, bounds, fault switches, the per-node resolver."""
from __future__ import annotations

import errno
import glob
import os
import subprocess
import sys
from typing import Iterator

import pytest

from harness.famfs.devices import EHWPOISON, ENOTUNIQ, DaxDevice, DaxDeviceError, fake_dev_t, open_device
from harness.famfs.resolver import Node, Resolver
from harness.famfs.errors import DeviceError, FamfsError
from harness.famfs.image import Image, mkfs_secondary
from harness.famfs.ids import uuid_str
from harness.famfs.invariants import Invariant
from harness.famfs.layout import SUPERBLOCK, Superblock
from harness.famfs.probe import Probe

MiB = 1 << 20
SMALL = 64 * 1024
LOG_LEN = 0x10000
PRIMARY_SIZE = 8 * MiB
SECONDARY_SIZE = 4 * MiB


class Recorder(Probe):
    enabled = True

    def __init__(self) -> None:
        self.resolved: list[tuple[str, str, str | None]] = []

    def device_resolved(self, node: str, uuid: str, name: str | None) -> None:
        self.resolved.append((node, uuid, name))


def assert_device_error(exc: BaseException, err: int, invariant: Invariant) -> None:
    assert isinstance(exc, DaxDeviceError) and isinstance(exc, DeviceError) and isinstance(exc, FamfsError), type(exc)
    assert exc.errno == err, (errno.errorcode.get(exc.errno), exc)
    assert exc.invariant is invariant, exc


@pytest.fixture
def dev() -> Iterator[DaxDevice]:
    with DaxDevice.memfd(SMALL, "dax0.0", node="A") as d:
        yield d


class Cluster:
    """A famfs on three memfd devices (primary, two secondaries), built through node A's mappings."""

    def __init__(self) -> None:
        self.a = [DaxDevice.memfd(PRIMARY_SIZE, "dax0.0", node="A"),
                  DaxDevice.memfd(SECONDARY_SIZE, "dax1.0", node="A"),
                  DaxDevice.memfd(SECONDARY_SIZE, "dax2.0", node="A")]
        views = [d.view(0, d.size) for d in self.a]
        self.image = Image.mkfs(views, log_len=LOG_LEN)
        self.file = self.image.create("f", 1 * MiB, devindex=1)
        self.uuids = [d.uuid for d in self.image.table]
        self.image = None                     # drop the builder's views
        for v in views:
            v.release()
        self.extra: list[DaxDevice] = []

    def node_b(self) -> list[DaxDevice]:
        """The same memory as node B sees it: other names, other order."""
        b = [self.a[2].alias("pmem-x", node="B"), self.a[0].alias("dax7.3", node="B"),
             self.a[1].alias("dax4.1", node="B")]
        self.extra += b
        return b

    def close(self) -> None:
        for d in self.a + self.extra:
            d.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


# -- backends and sharing -----------------------------------------------------------------------


def test_memfd_two_mappings_share(dev: DaxDevice) -> None:
    other = dev.alias("dax9.0", node="B")
    try:
        assert other.size == dev.size and other.kind == "memfd" and other.fd != dev.fd
        dev.write(100, b"from-A")
        assert other.read(100, 6) == b"from-A"
        other.view(SMALL - 4, 4)[:] = b"tail"
        assert dev.read(SMALL - 4, 4) == b"tail"
    finally:
        other.close()


def test_emulated_file_created_sparse_and_shared(tmp_path) -> None:
    path = tmp_path / "dev0"
    with DaxDevice.emulated_file(path, 64 * MiB) as a:
        assert a.kind == "file" and a.size == 64 * MiB and a.name == str(path)
        assert os.path.getsize(path) == 64 * MiB
        assert os.stat(path).st_blocks * 512 < 1 * MiB          # sparse
        with DaxDevice.emulated_file(path, name="dax0.0", node="B") as b:
            assert b.size == 64 * MiB and b.name == "dax0.0"
            a.write(32 * MiB, b"xyz")
            assert b.read(32 * MiB, 3) == b"xyz"
            b.write(0, bytearray(b"abc"))
            assert a.read(0, 3) == b"abc"
    with open(path, "rb") as f:
        assert f.read(3) == b"abc"
    with DaxDevice.emulated_file(path, 128 * MiB) as c:                  # extends, keeps data
        assert os.path.getsize(path) == 128 * MiB and c.read(0, 3) == b"abc"
    with DaxDevice.emulated_file(path, 1 * MiB) as d:                    # never shrinks the file
        assert d.size == 1 * MiB and os.path.getsize(path) == 128 * MiB


def test_emulated_file_errors(tmp_path) -> None:
    with pytest.raises(DeviceError) as e:
        DaxDevice.emulated_file(tmp_path / "missing")
    assert_device_error(e.value, errno.ENOENT, Invariant.IDX_RESOLVE)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DeviceError) as e:
        DaxDevice.emulated_file(tmp_path / "empty")
    assert_device_error(e.value, errno.EINVAL, Invariant.IDX_RESOLVE)
    (tmp_path / "small").write_bytes(b"x" * 10)
    with pytest.raises(DeviceError) as e:
        DaxDevice.emulated_file(tmp_path / "small", 4096, readonly=True)
    assert_device_error(e.value, errno.EINVAL, Invariant.IDX_RESOLVE)
    with pytest.raises(DeviceError) as e:
        DaxDevice.emulated_file(tmp_path, 4096)
    assert e.value.invariant is Invariant.IDX_RESOLVE


def test_memfd_reopened_through_proc_fd(dev: DaxDevice) -> None:
    with DaxDevice.emulated_file(f"/proc/self/fd/{dev.fd}", name="dax5.5") as other:
        assert other.size == dev.size
        other.write(7, b"via-proc")
        assert dev.read(7, 8) == b"via-proc"


def test_memfd_shared_with_forked_child(dev: DaxDevice) -> None:
    dev.write(0, b"parent")
    pid = os.fork()
    if pid == 0:                                                         # child: map afresh, read, write
        code = 1
        try:
            with DaxDevice.from_fd(dev.fd, "child-view") as mine:
                code = 0 if mine.read(0, 6) == b"parent" else 2
                mine.write(1000, b"child was here")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert dev.read(1000, 14) == b"child was here"


def test_memfd_shared_with_another_program(dev: DaxDevice) -> None:
    dev.write(0, b"ping")
    code = ("import mmap, os, sys\n"
            f"fd = os.open('/proc/self/fd/{dev.fd}', os.O_RDWR)\n"
            f"m = mmap.mmap(fd, {dev.size}, mmap.MAP_SHARED)\n"
            "assert m[0:4] == b'ping', m[0:4]\n"
            "m[4:8] = b'pong'\n")
    subprocess.run([sys.executable, "-c", code], pass_fds=(dev.fd,), check=True, timeout=30)
    assert dev.read(0, 8) == b"pingpong"


def test_from_fd_refuses_mapping_past_eof(dev: DaxDevice) -> None:
    with pytest.raises(DeviceError) as e:
        DaxDevice.from_fd(dev.fd, "too-big", dev.size + 4096)
    assert_device_error(e.value, errno.EINVAL, Invariant.IDX_RESOLVE)
    with pytest.raises(DeviceError) as e:
        DaxDevice.from_fd(999_999, "bad-fd")
    assert_device_error(e.value, errno.EBADF, Invariant.IDX_RESOLVE)


def test_fake_dev_t_is_stable_per_node_and_name() -> None:
    assert fake_dev_t("A", "dax0.0") == fake_dev_t("A", "dax0.0")
    assert fake_dev_t("A", "dax0.0") != fake_dev_t("B", "dax0.0")
    assert fake_dev_t("A", "dax0.0") != fake_dev_t("A", "dax1.0")
    assert os.major(fake_dev_t("A", "dax0.0")) == 250
    with DaxDevice.memfd(4096, "dax0.0", node="A") as d, DaxDevice.memfd(4096, "x", dev_t=os.makedev(7, 7)) as e:
        assert d.dev_t == d.devno == fake_dev_t("A", "dax0.0")
        assert e.dev_t == os.makedev(7, 7)


def test_close_and_context_manager() -> None:
    d = DaxDevice.memfd(SMALL, "dax0.0")
    held = d.view(0, 16)                                                 # an exported view
    d.close()
    d.close()                                                            # idempotent
    assert d.closed
    held[0:2] = b"ok"                                                    # the mapping outlives close
    held.release()
    for call in (lambda: d.read(0, 1), lambda: d.write(0, b"x"), lambda: d.view(0, 1)):
        with pytest.raises(DeviceError) as e:
            call()
        assert_device_error(e.value, errno.EBADF, Invariant.IDX_RESOLVE)
    with DaxDevice.memfd(SMALL, "dax1.0") as c:
        fd = c.fd
    assert c.closed
    with pytest.raises(OSError):
        os.fstat(fd)


def test_readonly_device_refuses_writes(tmp_path) -> None:
    path = tmp_path / "ro"
    path.write_bytes(b"R" * 8192)
    with DaxDevice.emulated_file(path, readonly=True) as d:
        assert d.read(0, 2) == b"RR"
        with pytest.raises(DeviceError) as e:
            d.write(0, b"x")
        assert e.value.errno == errno.EROFS


# -- bounds -------------------------------------------------------------------------------------

BAD_RANGES = [(-1, 1), (-1, 0), (SMALL, 1), (SMALL - 1, 2), (0, SMALL + 1), (0, 1 << 64),
              (1 << 63, 1 << 63), ((1 << 64) - 1, 2), (0, -1), (5, -5), (-(1 << 70), 1), (SMALL + 1, 0)]


@pytest.mark.parametrize("offset,length", BAD_RANGES)
def test_out_of_bounds_is_ext_bounds(dev: DaxDevice, offset: int, length: int) -> None:
    seen: list[tuple] = []
    dev.on_access = lambda *a: seen.append(a)
    for call in (lambda: dev.read(offset, length), lambda: dev.read_view(offset, length),
                 lambda: dev.view(offset, length)):
        with pytest.raises(DeviceError) as e:
            call()
        assert_device_error(e.value, errno.ERANGE, Invariant.EXT_BOUNDS)
    if length >= 0 and length <= 2 * SMALL:
        with pytest.raises(DeviceError) as e:
            dev.write(offset, bytes(length))
        assert_device_error(e.value, errno.ERANGE, Invariant.EXT_BOUNDS)
    assert seen == []


def test_in_bounds_edges(dev: DaxDevice) -> None:
    assert dev.read(SMALL - 1, 1) == b"\0"
    assert dev.read(SMALL, 0) == b""
    assert dev.read(0, SMALL) == bytes(SMALL)
    assert len(dev.view(0, SMALL)) == SMALL
    dev.write(SMALL - 2, b"zz")
    dev.write(SMALL, b"")
    assert dev.read(SMALL - 2, 2) == b"zz"
    dev.write(8, memoryview(bytes(range(8))).cast("B", (2, 4)))          # multi-dim buffer flattened
    assert dev.read(8, 8) == bytes(range(8))


def test_on_access_hook(dev: DaxDevice) -> None:
    seen: list[tuple] = []
    dev.on_access = lambda *a: seen.append(a)
    dev.read(10, 5)
    dev.write(20, b"abc")
    dev.view(30, 4)
    assert seen == [("A", "dax0.0", 10, 5, False), ("A", "dax0.0", 20, 3, True),
                    ("A", "dax0.0", 30, 4, False)]


# -- fault switches -----------------------------------------------------------------------------


def test_no_faults_means_flag_off(dev: DaxDevice) -> None:
    assert dev._faulty is False
    dev.fail_io = True
    assert dev._faulty is True
    dev.fail_io = False
    assert dev._faulty is False


def test_fail_io(dev: DaxDevice) -> None:
    dev.fail_io = True
    for call in (lambda: dev.read(0, 1), lambda: dev.write(0, b"x"), lambda: dev.view(0, 1)):
        with pytest.raises(DeviceError) as e:
            call()
        assert_device_error(e.value, errno.EIO, Invariant.DATA)
    dev.fail_io = False
    assert dev.read(0, 1) == b"\0"


def test_bounds_checked_before_faults(dev: DaxDevice) -> None:
    dev.fail_io = True
    with pytest.raises(DeviceError) as e:
        dev.read(SMALL, 1)
    assert e.value.errno == errno.ERANGE


def test_vanished(cluster: Cluster) -> None:
    node = Resolver("A", cluster.a)
    sec = cluster.a[1]
    sec.vanished = True
    for call in (lambda: sec.read(0, 1), lambda: sec.write(0, b"x"), lambda: sec.view(0, 1)):
        with pytest.raises(DeviceError) as e:
            call()
        assert_device_error(e.value, errno.ENODEV, Invariant.IDX_RESOLVE)
    with pytest.raises(DeviceError) as e:
        node.resolve(cluster.uuids[1])
    assert_device_error(e.value, errno.ENODEV, Invariant.IDX_RESOLVE)
    assert node.by_name("dax1.0") is None and node.by_devno(sec.dev_t) is None
    assert node.resolve(cluster.uuids[2]) is cluster.a[2]
    node.rescan()                                                        # gone from the scan too
    assert node.resolve(cluster.uuids[1]) is None
    assert [d.name for d, _ in node.ignored] == ["dax1.0"]
    sec.vanished = False
    node.rescan()
    assert node.resolve(cluster.uuids[1]) is sec


def test_poison(dev: DaxDevice) -> None:
    dev.poison = [(4096, 8192)]
    assert dev.read(0, 4096) == bytes(4096)                              # adjacent below
    assert dev.read(8192, 10) == bytes(10)                               # adjacent above
    assert dev.read(4096, 0) == b""                                      # empty access
    for call in (lambda: dev.read(4095, 2), lambda: dev.read(0, SMALL), lambda: dev.write(8191, b"x"),
                 lambda: dev.view(5000, 1)):
        with pytest.raises(DeviceError) as e:
            call()
        assert_device_error(e.value, EHWPOISON, Invariant.DATA)
    assert EHWPOISON == getattr(errno, "EHWPOISON", errno.EIO)
    assert dev.poison == [(4096, 8192)]
    dev.poison.append((0, 1))                                            # a copy: no effect
    assert dev.read(0, 1) == b"\0"
    dev.add_poison(0, 1)
    with pytest.raises(DeviceError):
        dev.read(0, 1)
    dev.poison = []
    assert dev._faulty is False and dev.read(4096, 10) == bytes(10)


def test_fail_nth_read_write_map(dev: DaxDevice) -> None:
    dev.fail_nth("read", 3)
    dev.read(0, 1)
    dev.write(0, b"x")                                                   # other ops do not count
    dev.read(0, 1)
    with pytest.raises(DeviceError) as e:
        dev.read(0, 1)
    assert_device_error(e.value, errno.EIO, Invariant.DATA)
    dev.read(0, 1)                                                       # once only
    assert dev._faulty is False
    dev.fail_nth("write", 1)
    dev.fail_nth("map", 2)
    with pytest.raises(DeviceError):
        dev.write(0, b"y")
    dev.write(0, b"y")
    dev.view(0, 1)
    with pytest.raises(DeviceError) as e:
        dev.view(0, 1)
    assert e.value.errno == errno.EIO
    assert dev._faulty is False
    dev.fail_nth("read", 1)
    dev.fail_nth("read", 2)
    for _ in range(2):
        with pytest.raises(DeviceError):
            dev.read(0, 1)
    dev.read(0, 1)


def test_read_view_is_a_read_without_the_copy(dev: DaxDevice) -> None:
    seen: list[tuple] = []
    dev.on_access = lambda *a: seen.append(a)
    dev.write(8, b"abc")
    view = dev.read_view(8, 3)
    assert view == b"abc"
    dev.write(8, b"xyz")
    assert view == b"xyz"                                                # the mapping itself, not a copy
    view.release()
    assert seen[1] == ("A", "dax0.0", 8, 3, False)                       # heard as a read
    dev.fail_nth("read", 2)
    dev.read(0, 1)
    with pytest.raises(DeviceError) as e:                                # counted with read()
        dev.read_view(0, 1)
    assert_device_error(e.value, errno.EIO, Invariant.DATA)


def test_fail_nth_counts_ops_failed_by_other_faults(dev: DaxDevice) -> None:
    dev.fail_nth("read", 2)
    dev.fail_io = True
    with pytest.raises(DeviceError):
        dev.read(0, 1)                                                   # counted (1), EIO from fail_io
    dev.fail_io = False
    with pytest.raises(DeviceError):
        dev.read(0, 1)                                                   # the 2nd: injected
    dev.read(0, 1)


def test_fail_nth_rejects_bad_arguments(dev: DaxDevice) -> None:
    with pytest.raises(ValueError):
        dev.fail_nth("seek", 1)
    with pytest.raises(ValueError):
        dev.fail_nth("read", 0)


def test_fail_nth_open_skips_device_in_scan(cluster: Cluster) -> None:
    cluster.a[2].fail_nth("open", 1)
    node = Resolver("A", cluster.a)
    assert node.resolve(cluster.uuids[2]) is None
    (skipped, why), = node.ignored
    assert skipped is cluster.a[2] and "injected" in why
    node.rescan()
    assert node.resolve(cluster.uuids[2]) is cluster.a[2]


def test_clear_faults(dev: DaxDevice) -> None:
    dev.fail_io = dev.vanished = True
    dev.poison = [(0, 1)]
    dev.fail_nth("read", 5)
    dev.clear_faults()
    assert dev._faulty is False and not dev.fail_io and not dev.vanished and dev.poison == []
    for _ in range(6):
        dev.read(0, 1)


# -- the resolver -------------------------------------------------------------------------------


def test_resolver_same_uuids_different_local_names(cluster: Cluster) -> None:
    probe = Recorder()
    a = Resolver("A", cluster.a, probe=probe)
    b = Node("B", cluster.node_b(), probe=probe)
    names_a = [a.resolve(u).name for u in cluster.uuids]
    names_b = [b.resolve(u).name for u in cluster.uuids]
    assert names_a == ["dax0.0", "dax1.0", "dax2.0"]
    assert names_b == ["dax7.3", "dax4.1", "pmem-x"]
    uuids = list(cluster.uuids)               # the probe and the resolver give UUIDs as raw bytes
    assert probe.resolved == [("A", u, n) for u, n in zip(uuids, names_a, strict=True)] + \
                             [("B", u, n) for u, n in zip(uuids, names_b, strict=True)]
    assert a.uuids() == dict(zip(names_a, uuids, strict=True)) and b.uuids() == dict(zip(names_b, uuids, strict=True))
    # same memory: the file's bytes written by node A's builder are read through node B's device
    ext = cluster.file.fmap.extents[0]
    dev_b = b.resolve(cluster.uuids[ext.devindex])
    assert dev_b.read(ext.offset, 64) == cluster.a[1].read(ext.offset, 64) != bytes(64)
    dev_b.write(ext.offset, b"B-wrote")
    assert cluster.a[1].read(ext.offset, 7) == b"B-wrote"
    # node-local dev_t differs per node; by_name / by_devno find the node's own device
    assert dev_b.dev_t != cluster.a[1].dev_t
    assert b.by_devno(dev_b.dev_t) is dev_b and b.by_name("dax4.1") is dev_b
    assert a.by_name("dax4.1") is None and b.by_name("dax1.0") is None
    # string UUIDs are accepted too
    assert b.resolve(uuid_str(cluster.uuids[0])) is b.resolve(cluster.uuids[0])


def test_resolver_missing_is_none(cluster: Cluster) -> None:
    probe = Recorder()
    node = Resolver("A", cluster.a[:2], probe=probe)
    assert node.resolve(cluster.uuids[2]) is None
    assert probe.resolved == [("A", cluster.uuids[2], None)]
    assert node.resolve(bytes(16)) is None
    with pytest.raises(DeviceError) as e:
        node.resolve(b"short")
    assert_device_error(e.value, errno.EINVAL, Invariant.IDX_RESOLVE)


def test_resolver_probe_disabled_is_silent(cluster: Cluster) -> None:
    class Off(Recorder):
        enabled = False
    probe = Off()
    node = Resolver("A", cluster.a, probe=probe)
    node.resolve(cluster.uuids[0])
    node.resolve(bytes(16))
    assert probe.resolved == []


def test_duplicate_uuid_fails_only_that_uuid(cluster: Cluster) -> None:
    twin = cluster.a[1].alias("dax1.1", node="A")
    cluster.extra.append(twin)
    probe = Recorder()
    node = Resolver("A", cluster.a + [twin], probe=probe)                # constructing is fine
    with pytest.raises(DeviceError) as e:
        node.resolve(cluster.uuids[1])
    assert_device_error(e.value, ENOTUNIQ, Invariant.IDX_RESOLVE)
    assert "dax1.0" in e.value.message and "dax1.1" in e.value.message
    assert ENOTUNIQ == getattr(errno, "ENOTUNIQ", errno.EEXIST)
    assert node.resolve(cluster.uuids[0]) is cluster.a[0]
    assert node.resolve(cluster.uuids[2]) is cluster.a[2]
    assert node.primary() is cluster.a[0]
    assert [u for _, u, _ in probe.resolved].count(cluster.uuids[1]) == 0


def test_same_device_object_listed_twice_is_one_device(cluster: Cluster) -> None:
    node = Resolver("A", cluster.a + [cluster.a[1]])
    assert node.resolve(cluster.uuids[1]) is cluster.a[1] and len(node.devices) == 3


def test_corrupted_superblock_crc_ignored(cluster: Cluster) -> None:
    sec = cluster.a[2]
    crc_at = SUPERBLOCK.offsets["crc"]
    good = sec.read(crc_at, 8)
    sec.write(crc_at, bytes(b ^ 0xFF for b in good))
    node = Resolver("A", cluster.a)
    assert node.resolve(cluster.uuids[2]) is None
    assert node.label(sec) is None
    assert [d for d, _ in node.ignored] == [sec] and "CRC" in node.ignored[0][1]
    sec.write(crc_at, good)                                              # repaired: seen on rescan
    node.rescan()
    assert node.resolve(cluster.uuids[2]) is sec and node.label(sec).dev_uuid == cluster.uuids[2]


def test_bad_magic_and_tiny_devices_ignored(cluster: Cluster) -> None:
    with DaxDevice.memfd(SMALL, "blank") as blank, DaxDevice.memfd(100, "tiny") as tiny:
        node = Resolver("A", cluster.a + [blank, tiny])
        reasons = {d.name: why for d, why in node.ignored}
        assert set(reasons) == {"blank", "tiny"}
        assert "magic" in reasons["blank"] and "smaller" in reasons["tiny"]
        assert node.primary() is cluster.a[0]


def test_rescan_finds_late_devices(cluster: Cluster) -> None:
    node = Resolver("A", cluster.a[:1])
    assert node.resolve(cluster.uuids[1]) is None
    node.rescan([cluster.a[1], cluster.a[2]])
    assert node.resolve(cluster.uuids[1]) is cluster.a[1]
    assert node.resolve(cluster.uuids[2]) is cluster.a[2]
    with DaxDevice.memfd(SECONDARY_SIZE, "late") as late:               # formatted after it appeared
        node.rescan([late])
        new = bytes(range(16))
        assert node.resolve(new) is None
        mkfs_secondary(late.view(0, late.size), late.size, dev_uuid=new, fs_uuid=bytes(16),
                       system_uuid=bytes(16))
        node.rescan()
        assert node.resolve(new) is late


def test_primary_picks_the_log_holder(cluster: Cluster) -> None:
    probe = Recorder()
    node = Resolver("B", list(reversed(cluster.a)), probe=probe)
    assert node.primary() is cluster.a[0]
    assert probe.resolved == [("B", cluster.uuids[0], "dax0.0")]
    b = Resolver("B", cluster.node_b())
    assert b.primary().name == "dax7.3"


def test_primary_none_or_several(cluster: Cluster) -> None:
    with pytest.raises(DeviceError) as e:
        Resolver("A", cluster.a[1:]).primary()                           # secondaries only
    assert_device_error(e.value, errno.ENODEV, Invariant.IDX_PRIMARY)
    with pytest.raises(DeviceError) as e:
        Resolver("A", []).primary()
    assert_device_error(e.value, errno.ENODEV, Invariant.IDX_PRIMARY)
    with DaxDevice.memfd(PRIMARY_SIZE, "other-fs") as other:
        Image.mkfs([other.view(0, other.size)], log_len=LOG_LEN)
        with pytest.raises(DeviceError) as e:
            Resolver("A", cluster.a + [other]).primary()
        assert_device_error(e.value, ENOTUNIQ, Invariant.IDX_PRIMARY)


def test_primary_needs_log_len_and_no_secondary_flag(cluster: Cluster) -> None:
    sb = Superblock.decode(cluster.a[0].read(0, SUPERBLOCK.size))
    with DaxDevice.memfd(SECONDARY_SIZE, "no-log") as d:
        from dataclasses import replace
        d.write(0, replace(sb, log_len=0, dev_uuid=bytes(range(16))).sealed().encode())
        node = Resolver("A", cluster.a[1:] + [d])
        assert node.resolve(bytes(range(16))) is d                       # identified ...
        with pytest.raises(DeviceError) as e:
            node.primary()                                               # ... but not a primary
        assert e.value.invariant is Invariant.IDX_PRIMARY


def test_primary_with_corrupt_crc_is_not_found(cluster: Cluster) -> None:
    cluster.a[0].write(SUPERBLOCK.offsets["crc"], b"\xff" * 8)
    with pytest.raises(DeviceError) as e:
        Resolver("A", cluster.a).primary()
    assert_device_error(e.value, errno.ENODEV, Invariant.IDX_PRIMARY)
    assert "CRC" in e.value.message


def test_devno_collision_is_reported_on_lookup() -> None:
    same = os.makedev(250, 1)
    with DaxDevice.memfd(4096, "x", dev_t=same) as x, DaxDevice.memfd(4096, "y", dev_t=same) as y:
        node = Resolver("A", [x, y])
        with pytest.raises(DeviceError) as e:
            node.by_devno(same)
        assert_device_error(e.value, ENOTUNIQ, Invariant.IDX_RESOLVE)
        assert node.by_name("y") is y and node.by_devno(os.makedev(250, 2)) is None


def test_resolver_serves_a_daemon(cluster: Cluster) -> None:
    from harness.famfs.daemon import Daemon              # our own module: an ImportError is a failure
    node = Resolver("B", cluster.node_b())
    daemon = Daemon.mount(node)
    ino = daemon.ino_of("f")
    data = daemon.read(ino, 0, 4096)
    assert data == cluster.a[1].read(cluster.file.fmap.extents[0].offset, 4096)


# -- real devdax and open_device ----------------------------------------------------------------


@pytest.fixture
def fake_sysfs(tmp_path):
    """A sysfs tree that describes /dev/zero (a char device whose MAP_SHARED mapping works)."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this machine")
    rdev = os.stat("/dev/zero").st_rdev
    d = tmp_path / "sys" / "dev" / "char" / f"{os.major(rdev)}:{os.minor(rdev)}"
    d.mkdir(parents=True)
    (d / "size").write_text(f"{5 * MiB + 123}\n")
    return tmp_path / "sys", d


def test_real_on_non_char_path(tmp_path) -> None:
    f = tmp_path / "plain"
    f.write_bytes(bytes(4 * MiB))
    with pytest.raises(DeviceError) as e:
        DaxDevice.real(f)
    assert_device_error(e.value, errno.ENODEV, Invariant.IDX_RESOLVE)
    assert "character device" in e.value.message
    with pytest.raises(DeviceError) as e:
        DaxDevice.real(tmp_path / "no-such-dax")
    assert_device_error(e.value, errno.ENOENT, Invariant.IDX_RESOLVE)


def test_real_without_sysfs_entry(tmp_path) -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this machine")
    with pytest.raises(DeviceError) as e:
        DaxDevice.real("/dev/zero", sysfs=str(tmp_path))
    assert_device_error(e.value, errno.ENODEV, Invariant.IDX_RESOLVE)
    assert "sysfs" in e.value.message


def test_real_sizes_from_sysfs_rounded_to_alignment(fake_sysfs) -> None:
    root, entry = fake_sysfs
    with DaxDevice.real("/dev/zero", "dax0.0", node="A", sysfs=str(root)) as d:
        assert d.kind == "real" and d.size == 4 * MiB                    # 5 MiB + 123 -> 2 MiB multiple
        assert d.dev_t == os.stat("/dev/zero").st_rdev
        d.write(4 * MiB - 3, b"end")
        assert d.read(4 * MiB - 3, 3) == b"end"
        with pytest.raises(DeviceError) as e:
            d.read(4 * MiB - 3, 4)
        assert e.value.invariant is Invariant.EXT_BOUNDS
    (entry / "align").write_text("4096\n")
    with DaxDevice.real("/dev/zero", sysfs=str(root)) as d:
        assert d.size == 5 * MiB and d.name == "zero"
    (entry / "size").write_text("4095\n")
    with pytest.raises(DeviceError) as e:
        DaxDevice.real("/dev/zero", sysfs=str(root))
    assert_device_error(e.value, errno.EINVAL, Invariant.IDX_RESOLVE)


def test_real_size_from_bus_dax_entry(tmp_path) -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this machine")
    d = tmp_path / "bus" / "dax" / "devices" / "zero"
    d.mkdir(parents=True)
    (d / "size").write_text(str(2 * MiB))
    with DaxDevice.real("/dev/zero", sysfs=str(tmp_path)) as dev:
        assert dev.size == 2 * MiB


def test_open_device_chooses_by_path(tmp_path, fake_sysfs) -> None:
    root, _ = fake_sysfs
    f = tmp_path / "img"
    with open_device(f, size=4 * MiB, name="dax0.0") as d:               # missing + size: created
        assert d.kind == "file" and d.name == "dax0.0" and d.size == 4 * MiB
    with open_device(str(f)) as d:
        assert d.kind == "file" and d.size == 4 * MiB and d.name == str(f)
    with open_device("/dev/zero", sysfs=str(root)) as d:
        assert d.kind == "real"
    for spec, err in ((tmp_path / "nope", errno.ENOENT), (tmp_path, errno.ENODEV)):
        with pytest.raises(DeviceError) as e:
            open_device(spec)
        assert_device_error(e.value, err, Invariant.IDX_RESOLVE)


def test_real_devdax_if_present() -> None:
    found = sorted(glob.glob("/dev/dax*"))
    if not found:
        print("skipping real devdax test: no /dev/dax* device on this machine")
        pytest.skip("no /dev/dax* device on this machine")
    try:
        d = DaxDevice.real(found[0], readonly=True)
    except DeviceError as e:
        if e.errno not in (errno.EACCES, errno.EPERM):
            raise                                        # present and permitted, yet unusable: a failure
        pytest.skip(f"{found[0]} present but not permitted here: {e}")
    with d:                                                              # read-only: never clobber a real device
        assert d.size > 0 and d.size % (2 * MiB) == 0 and d.kind == "real"
        assert len(d.read(d.size - 8, 8)) == 8
        with pytest.raises(DeviceError):
            d.read(d.size - 8, 9)
        Resolver("local", [d])                                           # scanning never raises
