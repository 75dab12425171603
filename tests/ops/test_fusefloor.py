"""The FUSE floor's stand-in daemon, served by the famfs adapter's own handlers (no mount)."""
from __future__ import annotations

import errno
import stat

import pyfuse3
import pytest
import trio

from harness.ops.fusefloor import ConstantFile
from harness.famfs.fuse import FamfsOperations


def test_the_adapter_serves_one_file_of_the_given_size():
    ops = FamfsOperations(ConstantFile(3 << 20))        # type: ignore[arg-type]
    big = trio.run(ops.lookup, pyfuse3.ROOT_INODE, b"big")
    assert stat.S_ISREG(big.st_mode) and big.st_size == 3 << 20
    fi = trio.run(ops.open, big.st_ino, 0)
    assert len(trio.run(ops.read, fi.fh, 0, 128 << 10)) == 128 << 10
    assert len(trio.run(ops.read, fi.fh, (3 << 20) - 5, 128 << 10)) == 5      # stops at the end
    assert len(trio.run(ops.read, fi.fh, 3 << 20, 128 << 10)) == 0
    with pytest.raises(pyfuse3.FUSEError) as e:
        trio.run(ops.lookup, pyfuse3.ROOT_INODE, b"other")
    assert e.value.errno == errno.ENOENT
