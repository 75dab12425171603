"""fsck: cross-file checks over a replayed file system (EXT-OVERLAP, EXT-BOUNDS per device, counts).

Replay checks each entry alone; fsck looks across files, as famfs's `famfs_build_bitmap` does, but
with intervals instead of a bitmap, so a crafted device size (ADD_DAXDEV carries any u64) costs no
memory: every extent and strip becomes an interval on its daxdev, the intervals of one device are
sorted, and a neighbour that starts before the previous one ends is an allocation collision.
When the real size of a device is known (a file, a devdax) extents are checked against it too,
since the size in the log may be wrong for this node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from harness.famfs.errors import FamfsError, FsckFinding
from harness.famfs.layout import InterleavedFmap, SUPERBLOCK_SIZE
from harness.famfs.replay import Replay


@dataclass
class DeviceUsage:
    """Per-daxdev counts: files and extents on it, bytes allocated, its size in the log."""

    index: int
    uuid: str
    size: int
    files: int = 0
    extents: int = 0
    allocated: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "uuid": self.uuid, "size": self.size, "files": self.files,
                "extents": self.extents, "allocated": self.allocated}


@dataclass
class FsckReport:
    """fsck's verdict: per-device usage and the findings (empty when the file system is clean)."""

    devices: list[DeviceUsage]
    findings: list[FamfsError] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings


def fsck(result: Replay, real_sizes: Sequence[int | None] = ()) -> FsckReport:
    """Check the files of `result` against each other and against the devices' real sizes."""
    usage = [DeviceUsage(d.index, d.uuid_text, d.size) for d in result.table]
    reserved = [max(SUPERBLOCK_SIZE, result.superblock.log_offset + result.superblock.log_len)]
    reserved += [SUPERBLOCK_SIZE] * (len(usage) - 1)
    intervals: list[list[tuple[int, int, int, str]]] = [[(0, r, -1, "superblock/log")] for r in reserved]
    report = FsckReport(usage)
    for f in result.namespace.files.values():
        extents = f.fmap.strips if isinstance(f.fmap, InterleavedFmap) else f.fmap.extents
        seen_on: set[int] = set()
        for ext in extents:
            u = usage[ext.devindex]
            u.extents += 1
            u.allocated += ext.len
            seen_on.add(ext.devindex)
            intervals[ext.devindex].append((ext.offset, ext.offset + ext.len, f.entry, f.path))
            real = real_sizes[ext.devindex] if ext.devindex < len(real_sizes) else None
            if real is not None and ext.offset + ext.len > real:
                report.findings.append(FsckFinding.beyond_device(
                    f.entry, f"{f.path!r}: extent ends at {ext.offset + ext.len:#x}, daxdev "
                             f"{ext.devindex} here has {real:#x} bytes", ext.devindex))
        for index in seen_on:
            usage[index].files += 1
    for index, spans in enumerate(intervals):
        spans.sort()
        end, owner = spans[0][1], spans[0]
        for span in spans[1:]:
            start, stop, entry, path = span
            if start < end:
                report.findings.append(FsckFinding.collision(
                    entry, f"ALLOCATION COLLISION on daxdev {index}: {path!r} at {start:#x} overlaps "
                           f"{owner[3]!r} (entry {owner[2]}) up to {end:#x}", index))
            if stop > end:
                end, owner = stop, span
    report.findings.sort(key=lambda e: (e.entry if e.entry is not None else -1))
    return report
