"""fmap arithmetic: a file offset -> (daxdev index, device offset, run length), for both extent kinds.

Simple extents are laid end to end; an interleaved extent stripes `chunk_size` chunks round-robin
over its strips (docs/famfs-format.md, section 3): chunk = off // chunk; strip = chunk % nstrips; stripe =
chunk // nstrips; device offset = strip.offset + stripe * chunk + off % chunk. A run ends at the
end of its chunk or of its strip, whichever comes first.

This is the userspace copy of that arithmetic (the image builder, fsck, the daemon). The kernel
side (`kernel.KernelFmap.resolve`) keeps its own on purpose, and says why: it stands for separate
kernel code, and the DATA check reads back through it what the builder placed with this one.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence, Union

from harness.famfs.layout import InterleavedFmap, SimpleExtent, SimpleFmap


def simple_run(extents: Iterable[SimpleExtent], offset: int) -> tuple[int, int, int] | None:
    """(devindex, device offset, bytes valid from there) of `offset` in extents laid end to end."""
    for ext in extents:
        if offset < ext.len:
            return ext.devindex, ext.offset + offset, ext.len - offset
        offset -= ext.len
    return None


def interleave_run(strips: Sequence[SimpleExtent], chunk_size: int, offset: int) -> tuple[int, int, int] | None:
    """(devindex, device offset, bytes valid from there) of `offset` in one interleaved extent, or
    None where the strip it falls on is too short. `chunk_size` and `strips` must be non-empty."""
    c, within = divmod(offset, chunk_size)
    n = len(strips)
    strip = strips[c % n]
    dev_off = (c // n) * chunk_size + within
    if dev_off >= strip.len:
        return None
    return strip.devindex, strip.offset + dev_off, min(chunk_size - within, strip.len - dev_off)


def resolve(fmap: Union[SimpleFmap, InterleavedFmap], offset: int) -> tuple[int, int, int] | None:
    """(devindex, device offset, bytes valid from there) for file `offset`, or None past the map."""
    if isinstance(fmap, InterleavedFmap):
        return interleave_run(fmap.strips, fmap.chunk_size, offset)
    return simple_run(fmap.extents, offset)


def segments(fmap: Union[SimpleFmap, InterleavedFmap], size: int,
             start: int = 0) -> Iterator[tuple[int, int, int, int]]:
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
