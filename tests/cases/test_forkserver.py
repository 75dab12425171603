"""cases/forkserver.py: a forked child behaves as a new interpreter would for the mount drivers:
its output on `stdout`, its exit status from `poll`/`wait`, signals delivered, a timeout raised as
`subprocess.TimeoutExpired`; `spawn_mount` serves a real mount (FUSE) like `famfs-fuzz mount`; the
zygote forks daemons that are this process's children, and its death leaves forking here."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from harness.cases import forkserver


def test_a_forked_function_prints_and_exits_with_its_value():
    def run() -> int:
        print("hello from the child")
        return 3
    child = forkserver.spawn(run)
    assert child.stdout.read() == "hello from the child\n"
    assert child.wait(timeout=30) == 3
    assert child.poll() == 3


def test_a_forked_child_is_killed_and_reaped_and_a_wait_can_time_out():
    child = forkserver.spawn(lambda: time.sleep(60) or 0)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.05)
    assert child.poll() is None
    child.kill()
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.kill()                                          # a dead child: nothing to signal, no error


def test_an_exception_in_the_child_is_printed_and_exits_1():
    def run() -> int:
        raise RuntimeError("boom")
    child = forkserver.spawn(run)
    assert "RuntimeError: boom" in child.stdout.read()
    assert child.wait(timeout=30) == 1


def test_spawn_mount_serves_an_image_and_prints_the_mount_lines(tmp_path):
    if not os.path.exists("/dev/fuse") or subprocess.run(["which", "fusermount3"], capture_output=True).returncode:
        pytest.skip("needs /dev/fuse and fusermount3")
    from harness.famfs.image import Image
    dev = bytearray(32 << 20)
    image = Image.mkfs([dev], log_len=64 << 10)
    image.create("f", 4096, data=b"x" * 4096)
    path = tmp_path / "dev0.img"
    path.write_bytes(dev)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    child = forkserver.spawn_mount([str(path)], str(mnt), node="n")
    try:
        line = child.stdout.readline()
        assert "mounted on" in line, line
        assert (mnt / "f").read_bytes() == b"x" * 4096
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_the_zygotes_daemons_are_children_of_this_process_and_its_death_is_survived(tmp_path, monkeypatch):
    monkeypatch.setattr(forkserver.Zygote, "_shared", {})         # a zygote of this test's own
    zygote = forkserver.Zygote.shared()
    if zygote is None:
        pytest.skip("no zygote on this machine (clone(2) number unknown here, or it failed to start)")
    missing = str(tmp_path / "no-such-mountpoint")
    try:
        def no_fork_here(*args: object) -> None:
            raise AssertionError("spawn_mount forked this process while the zygote runs")
        with monkeypatch.context() as m:
            m.setattr(forkserver, "spawn", no_fork_here)
            child = forkserver.spawn_mount([str(tmp_path / "dev0.img")], missing)
        assert _parent_of(child.pid) == os.getpid()               # CLONE_PARENT: ours, not the zygote's
        assert "not a directory" in child.stdout.read()           # the mount verb's error, exit 2
        assert child.wait(timeout=30) == 2
        zygote.proc.kill()
        zygote.proc.wait()
        again = forkserver.spawn_mount([str(tmp_path / "dev0.img")], missing)     # forked here instead
        assert "not a directory" in again.stdout.read() and again.wait(timeout=30) == 2
        assert forkserver.Zygote.shared() is None
    finally:
        forkserver.Zygote.retire()


def test_a_forked_process_starts_a_zygote_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(forkserver.Zygote, "_shared", {})
    ours = forkserver.Zygote.shared()
    if ours is None:
        pytest.skip("no zygote on this machine")
    missing = str(tmp_path / "no-such-mountpoint")

    def run() -> int:                              # in a fork of this process
        theirs = forkserver.Zygote.shared()
        daemon = forkserver.spawn_mount([str(tmp_path / "dev0.img")], missing)
        print(theirs is not None and theirs is not ours, _parent_of(daemon.pid) == os.getpid(),
              daemon.wait(timeout=30))
        return 0
    try:
        child = forkserver.spawn(run)
        assert child.stdout.read().split()[-3:] == ["True", "True", "2"]
        assert child.wait(timeout=30) == 0
    finally:
        forkserver.Zygote.retire()
