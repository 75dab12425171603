"""The FUSE adapter's handlers awaited directly (no mount), and its one error path."""
from __future__ import annotations

import errno
import logging
import stat

import pyfuse3
import pytest
import trio

from harness.famfs.fuse import FamfsOperations
from harness.famfs.image import pattern
from tests.common.nodes import cluster


@pytest.fixture
def ops():
    c = cluster()
    c.add_node("A", [0, 1, 2])
    yield FamfsOperations(c.daemon("A"))
    c.close()


def run(coro_fn, *args):
    return trio.run(coro_fn, *args)


def test_lookup_getattr_read(ops):
    d = run(ops.lookup, pyfuse3.ROOT_INODE, b"d")
    assert stat.S_ISDIR(d.st_mode) and (d.st_uid, d.st_gid) == (1000, 100)
    a = run(ops.lookup, d.st_ino, b"a")
    assert stat.S_ISREG(a.st_mode) and a.st_size == 3 << 20
    fi = run(ops.open, a.st_ino, 0)
    assert run(ops.read, fi.fh, 5, 100) == pattern("d/a", 3 << 20)[5:105]


def test_errors_become_fuse_errors(ops, caplog):
    with pytest.raises(pyfuse3.FUSEError) as e:
        run(ops.lookup, pyfuse3.ROOT_INODE, b"nope")
    assert e.value.errno == errno.ENOENT
    a = run(ops.lookup, pyfuse3.ROOT_INODE, b"c")
    with pytest.raises(pyfuse3.FUSEError) as e:
        run(ops.open, a.st_ino, 1)                                   # O_WRONLY on a read-only famfs
    assert e.value.errno == errno.EROFS
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_internal_error_is_eio_and_reported(ops, caplog):
    seen = []
    ops.daemon.probe = type("P", (), {"internal_error": lambda self, where, err: seen.append(where)})()
    ops.daemon.read = lambda *a, **kw: 1 / 0
    with pytest.raises(pyfuse3.FUSEError) as e:
        run(ops.read, 5, 0, 10)
    assert e.value.errno == errno.EIO and seen == ["read"]
    assert any("internal error" in r.getMessage() for r in caplog.records)
