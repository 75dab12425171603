"""A real FUSE mount of the daemon (in a child process): bytes, stat, mmap, the probe, several nodes,
a master's append picked up by a client's logplay, and a stale mount left by a killed daemon."""
from __future__ import annotations

import errno
import mmap
import os
import subprocess

import pytest

from harness.tools.probelog import load, replay_into
from harness.famfs.image import pattern
from harness.famfs.ids import uuid_str
from harness.gen.spec import build
from harness.oracle.lookups import LookupChecker
from tests.common.fuse import MountProcess, needs_fuse
from tests.common.nodes import MiB, three_device_spec

pytestmark = needs_fuse


@pytest.fixture
def image_files(tmp_path):
    """The 3-device image (8 MiB log) written to three device files."""
    built = build(three_device_spec(log_len=8 * MiB))
    paths = []
    for i, buf in enumerate(built.devices):
        p = tmp_path / f"dev{i}.img"
        p.write_bytes(buf)
        paths.append(str(p))
    return built, paths


def mount(tmp_path, devices, name, **kw) -> MountProcess:
    mnt = tmp_path / f"mnt-{name}"
    mnt.mkdir()
    return MountProcess(devices, mnt, probe_log=tmp_path / f"probe-{name}.jsonl", **kw)


def checker(built, names_by_node) -> LookupChecker:
    expected = {d.index: uuid_str(d.uuid) for d in built.image.table}
    return LookupChecker(expected=expected, names=names_by_node)


def test_files_read_back_byte_for_byte(tmp_path, image_files):
    built, devs = image_files
    m = mount(tmp_path, [f"{p}=dax{i}.0" for i, p in enumerate(devs)], "a")
    try:
        for f in built.image.expected.files.values():
            want = pattern(f.path, f.size)
            got = subprocess.run(["cat", str(m.mountpoint / f.path)], capture_output=True, check=True).stdout
            assert got == want, f.path
            fd = os.open(m.mountpoint / f.path, os.O_RDONLY)
            try:
                for off, n in [(1, 7), (4095, 2), (2 * MiB - 1, 3), (3 * MiB + 5, MiB), (max(f.size - 1, 0), 9)]:
                    assert os.pread(fd, n, off) == want[off:off + n], (f.path, off, n)
                if f.size:
                    with mmap.mmap(fd, f.size, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
                        assert mm[:] == want
            finally:
                os.close(fd)
    finally:
        m.unmount()


def test_ls_shows_the_logs_modes_owners_and_sizes(tmp_path, image_files):
    built, devs = image_files
    m = mount(tmp_path, devs, "ls")
    try:
        for node in built.image.expected.walk():
            st = os.stat(m.mountpoint / node.path)
            assert st.st_mode & 0o7777 == node.mode, node.path
            assert (st.st_uid, st.st_gid) == (node.uid, node.gid), node.path
            if hasattr(node, "size"):
                assert st.st_size == node.size
        listing = subprocess.run(["ls", "-lRn", str(m.mountpoint)], capture_output=True, text=True, check=True).stdout
        assert "-rw------- 1 1000 100 3145728" in listing      # d/a
        assert "drwxr-x--- 2 1000 100" in listing               # d
        assert f"{5 * MiB + 7}" in listing                      # b, interleaved over 3 devices
    finally:
        m.unmount()


def test_probe_saw_every_lookup_of_a_read_heavy_run(tmp_path, image_files):
    built, devs = image_files
    m = mount(tmp_path, [f"{p}=dax{i}.0" for i, p in enumerate(devs)], "probe")
    reads = 0
    try:
        for _ in range(5):
            for f in built.image.expected.files.values():
                # no readahead (the harness's readers' way): each 128 KiB read(2) is one request
                with open(m.mountpoint / f.path, "rb", buffering=0) as fh:
                    os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
                    while fh.read(128 << 10):
                        reads += 1
    finally:
        m.unmount()
    events = load(str(m.probe_log))
    c = checker(built, {"node0": {f"dax{i}.0": uuid_str(d.uuid) for i, d in enumerate(built.spec.devices)}})
    replay_into(c, events)
    lookups = sum(1 for e in events if e["ev"] == "lookup")
    assert c.check() == lookups
    assert lookups >= reads > 100          # every 128 KiB read resolved at least one index
    print(f"\nprobe: {reads} reads through the mount, {lookups} lookups checked")


@pytest.mark.skipif(os.geteuid() != 0, reason="widening a mount's FUSE requests writes its sysfs read_ahead_kb (root)")
def test_a_large_read_reaches_the_daemon_in_1_MiB_requests_for_only_the_range_asked(tmp_path, image_files):
    """`fuse.widen_requests`: one pread(2) of 2 MiB + 5 bytes of a simple file is three requests
    (1 MiB, 1 MiB, one page), not 17 of 128 KiB; with POSIX_FADV_RANDOM nothing past the range
    is fetched (no request beyond its last page)."""
    built, devs = image_files
    m = mount(tmp_path, [f"{p}=dax{i}.0" for i, p in enumerate(devs)], "wide")
    f = built.image.expected.files["d/a"]                      # 3 MiB on one device
    try:
        fd = os.open(m.mountpoint / f.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            assert os.pread(fd, 2 * MiB + 5, 0) == pattern(f.path, f.size)[:2 * MiB + 5]
        finally:
            os.close(fd)
    finally:
        m.unmount()
    lookups = [e for e in load(str(m.probe_log)) if e["ev"] == "lookup"]
    assert len(lookups) == 3, lookups


def test_two_nodes_same_memory_other_names(tmp_path, image_files):
    built, devs = image_files
    a = mount(tmp_path, [f"{devs[0]}=dax0.0", f"{devs[1]}=dax1.0", f"{devs[2]}=dax2.0"], "A", node="A")
    b = mount(tmp_path, [f"{devs[0]}=dax2.0", f"{devs[2]}=dax0.0", f"{devs[1]}=dax1.0"], "B", node="B")
    try:
        for f in built.image.expected.files.values():
            assert (a.mountpoint / f.path).read_bytes() == (b.mountpoint / f.path).read_bytes() \
                == pattern(f.path, f.size)
        # The master appends a file on the shared memory; B sees it after its logplay.
        fds = [os.open(p, os.O_RDWR) for p in devs]
        maps = [mmap.mmap(fd, os.fstat(fd).st_size) for fd in fds]
        built.image.rebind(maps)
        f = built.image.create("late", 3 * MiB + 3, devindex=2)
        for mm in maps:
            mm.flush()
        assert not (b.mountpoint / "late").exists()
        b.logplay()
        assert (b.mountpoint / "late").read_bytes() == pattern("late", f.size)
        built.image.rebind([bytearray()] * 3)
        for mm, fd in zip(maps, fds, strict=True):
            mm.close()
            os.close(fd)
    finally:
        a.unmount()
        b.unmount()
    names = {"A": {"dax0.0": 0, "dax1.0": 1, "dax2.0": 2}, "B": {"dax2.0": 0, "dax0.0": 2, "dax1.0": 1}}
    c = checker(built, {n: {k: uuid_str(built.spec.devices[v].uuid) for k, v in m.items()} for n, m in names.items()})
    replay_into(c, load(str(a.probe_log)) + load(str(b.probe_log)))
    assert c.check() > 0
    assert set(c.cluster) == {0, 1, 2}


def test_stale_mount_of_a_killed_daemon_is_cleaned(tmp_path, image_files):
    built, devs = image_files
    m = mount(tmp_path, devs, "stale")
    m.proc.kill()
    m.proc.wait()
    with pytest.raises(OSError) as dead:
        os.listdir(m.mountpoint)                   # (stat may still be answered from the attr cache)
    assert dead.value.errno == errno.ENOTCONN      # the daemon is gone
    again = MountProcess(devs, m.mountpoint)      # detects and cleans the dead mount, mounts anew
    try:
        assert (m.mountpoint / "c").read_bytes() == pattern("c", 4096)
    finally:
        again.unmount()


@pytest.mark.parametrize("root", [True, False], ids=["umount2", "fusermount3"])
def test_unmount_lazy_detaches_a_dead_mount_and_ignores_a_plain_folder(tmp_path, image_files, monkeypatch, root):
    from harness.famfs.fuse import unmount_lazy
    if not root:                                   # the fallback: what a user who is not root gets
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    elif os.geteuid() != 0:
        pytest.skip("umount2 needs root")
    _, devs = image_files
    m = mount(tmp_path, devs, "dead")
    try:
        m.proc.kill()
        m.proc.wait()
        assert in_mount_table(m.mountpoint)        # (ismount stats it: ENOTCONN, so False)
        unmount_lazy(str(m.mountpoint))
        assert not in_mount_table(m.mountpoint) and os.listdir(m.mountpoint) == []
        unmount_lazy(str(m.mountpoint))            # nothing mounted there any more: no error
    finally:
        m.kill()                                   # a failed run leaves no dead mount behind


def in_mount_table(path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)
