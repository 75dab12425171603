"""A file system re-made under a real FUSE mount (famfs issue #135): the mount refuses, with ESTALE.

The test process is "another node": it runs mkfs again on the device file a mounted daemon (a child
process) serves, with a new file-system UUID and a new file at the old file's path and pages. The
mount must then refuse to open, list or read anything (ESTALE), and never return the new bytes
through the old file's map. With the identity check planted out (a copy of the tree), the same
steps read the new file system's bytes through the old mount: the check is what stops it.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import subprocess

import pytest

from harness.famfs.devices import DaxDevice
from harness.famfs.image import Image, pattern
from tests.common.fuse import MountProcess, needs_fuse
from tests.quality.test_planted import buggy_copy

pytestmark = needs_fuse

SIZE = 16 << 20
LOG = 1 << 20
UNIT = 2 << 20                          # the pull kernels want 2 MiB-aligned extents
FILE = 1 << 20
FAR = 768 << 10                         # a range past the kernel's readahead of the first read
PLANT = ("harness/famfs/daemon.py", "        if now == self.identity:\n            return\n",
         "        if True:\n            return\n")


def _make(path: str, tag: str) -> bytes:
    """mkfs on the device file (a fresh file-system UUID) and one file 'f' of 1 MiB: its bytes."""
    with DaxDevice.emulated_file(path, SIZE) as dev:
        view = dev.view(0, SIZE)
        image = Image.mkfs([view], [SIZE], log_len=LOG, alloc_unit=UNIT)
        data = pattern(tag, FILE)
        image.create("f", FILE, data=data)
        del view, image
    return data


def _sighup(m: MountProcess, timeout: float = 20.0) -> str:
    """A client's logplay (SIGHUP) on the mount; the first line the daemon prints after it."""
    m.proc.send_signal(signal.SIGHUP)
    assert m.proc.stdout is not None
    ready, _, _ = select.select([m.proc.stdout], [], [], timeout)
    return m.proc.stdout.readline() if ready else ""


def _errno(fn) -> int:
    try:
        fn()
    except OSError as e:
        return e.errno or 0
    return 0


@pytest.mark.parametrize("planted", [False, True], ids=["main", "check-planted-out"])
def test_remade_file_system_is_refused_by_the_mount(tmp_path, monkeypatch, planted):
    if planted:
        copy = buggy_copy(tmp_path, *PLANT)
        monkeypatch.setenv("PYTHONPATH", str(copy))
        monkeypatch.chdir(copy)                           # `python -m` puts the working directory first
    dev = str(tmp_path / "dax0.img")
    old = _make(dev, "old")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = MountProcess([f"{dev}=dax0.0"], mnt)
    try:
        fd = os.open(mnt / "f", os.O_RDONLY)
        try:
            assert os.pread(fd, 512, 0) == old[:512]
            new = _make(dev, "new")                       # another node: mkfs, the same path and pages
            assert new != old
            if planted:                                   # nothing notices: the new bytes come through
                assert os.pread(fd, 512, FAR) == new[FAR:FAR + 512]
                return
            assert _errno(lambda: os.pread(fd, 512, FAR)) == errno.ESTALE
            line = _sighup(m)                             # SIGHUP: the logplay refuses, the daemon lives on
            assert "logplay failed" in line and "FS-IDENTITY" in line and "ESTALE" in line, line
            assert _errno(lambda: os.pread(fd, 512, FAR)) == errno.ESTALE
        finally:
            os.close(fd)
        assert _errno(lambda: os.open(mnt / "f", os.O_RDONLY)) in (errno.ESTALE, errno.ENOENT)
        assert _errno(lambda: os.listdir(mnt)) == errno.ESTALE
        ls = subprocess.run(["cat", str(mnt / "f")], capture_output=True)
        assert ls.returncode != 0 and not ls.stdout
    finally:
        m.unmount()
