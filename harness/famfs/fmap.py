"""fmap arithmetic: a file offset -> (daxdev index, device offset, run length), for both extent kinds.

Simple extents are laid end to end; an interleaved extent stripes `chunk_size` chunks round-robin
over its strips (docs/famfs-format.md, section 3): chunk = off // chunk; strip = chunk % nstrips; stripe =
chunk // nstrips; device offset = strip.offset + stripe * chunk + off % chunk. The kernel side
(`kernel.py`) resolves faults with its own parsed map; this module serves the image builder,
fsck and the daemon.
"""
from __future__ import annotations

from typing import Iterator, Union

from harness.famfs.layout import InterleavedFmap, SimpleFmap


def resolve(fmap: Union[SimpleFmap, InterleavedFmap], offset: int) -> tuple[int, int, int] | None:
    """(devindex, device offset, bytes valid from there) for file `offset`, or None past the map."""
    if isinstance(fmap, InterleavedFmap):
        chunk, n = fmap.chunk_size, fmap.nstrips
        c, within = divmod(offset, chunk)
        strip = fmap.strips[c % n]
        dev_off = (c // n) * chunk + within
        if dev_off >= strip.len:
            return None
        return strip.devindex, strip.offset + dev_off, chunk - within
    for ext in fmap.extents:
        if offset < ext.len:
            return ext.devindex, ext.offset + offset, ext.len - offset
        offset -= ext.len
    return None


def segments(fmap: Union[SimpleFmap, InterleavedFmap], size: int, start: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """(file offset, devindex, device offset, length) runs covering [start, size)."""
    off = start
    while off < size:
        hit = resolve(fmap, off)
        if hit is None:
            return
        index, dev_off, run = hit
        run = min(run, size - off)
        yield off, index, dev_off, run
        off += run
