"""The FUSE floor: the famfs mount's own adapter serving one file whose reads cost nothing.

`ConstantFile` stands in for a `Daemon` (as `RefusedImage` does): one regular file, `big`, whose
reads return a slice of a constant buffer, with no GET_FMAP, daxdev table or DAX memory behind
it. Served by `famfs.fuse.serve` with the same mount options and open flags as a famfs mount, it
measures what every read through that mount pays before famfs does any work: the kernel's round
trip (page cache, /dev/fuse), pyfuse3 + trio, and the adapter. `bench` reads it beside the famfs
mount, so the FUSE row shows how far the famfs read is from the floor and the floor from the goal.

Run as ``python -m harness.ops.fusefloor MOUNTPOINT SIZE``; prints "mounted on" when serving.
"""
from __future__ import annotations

import stat
import sys
import time

from harness.famfs.daemon import ROOT_INO, Attr
from harness.famfs.probe import NULL_PROBE

FILE_INO = ROOT_INO + 1
NAME = "big"


class ConstantFile:
    """A stand-in daemon with one read-only file of `size` bytes; a read returns up to 1 MiB of
    one constant buffer (bytes the kernel has seen before: the cheapest reply there is)."""

    def __init__(self, size: int):
        now = time.time_ns()
        self.node = "floor"
        self.probe = NULL_PROBE
        self.devices: list[object] = []
        self.size = size
        self.buffer = memoryview(bytes(1 << 20))
        self.inodes = {ROOT_INO: Attr(ROOT_INO, stat.S_IFDIR | 0o555, 0, 0, 0, 2, now),
                       FILE_INO: Attr(FILE_INO, stat.S_IFREG | 0o444, 0, 0, size, 1, now)}

    def getattr(self, ino: int) -> Attr | None:
        return self.inodes.get(ino)

    def lookup(self, parent: int, name: str) -> Attr | None:
        return self.inodes[FILE_INO] if (parent, name) == (ROOT_INO, NAME) else None

    def readdir(self, ino: int) -> list[tuple[str, Attr]] | None:
        return [(NAME, self.inodes[FILE_INO])] if ino == ROOT_INO else None

    def read(self, ino: int, offset: int, length: int, *, zero_copy: bool = False) -> memoryview:
        return self.buffer[:max(0, min(length, self.size - offset))]


def main(argv: list[str]) -> None:
    from harness.famfs.fuse import serve
    mountpoint, size = argv[0], int(argv[1])
    serve(ConstantFile(size), mountpoint,  # type: ignore[arg-type]
          ready=lambda: print(f"fusefloor: mounted on {mountpoint}", flush=True))


if __name__ == "__main__":
    main(sys.argv[1:])
