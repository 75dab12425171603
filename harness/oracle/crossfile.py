"""Cross-file expectations: what fsck must find in an accepted image, computed from the model.

Replay judges each entry alone; fsck looks across files (EXT-OVERLAP, and EXT-BOUNDS against the
devices' real sizes on a node). A structured case knows every allocation, so every accepted image
goes through fsck and its answer must equal the one computed here, independently of fsck's sweep:

* overlaps, per daxdev, counted as fsck reports them (one finding per extent that starts inside
  an earlier one) but computed another way: the extents of a device, the superblock/log region
  included, minus the number of separate runs their union falls into. That count does not depend
  on how ties are ordered, so it is exact however fsck sorts.
* out-of-bounds extents: the (path, daxdev) of every extent that ends past the real size of its
  device on this node (None: the device is missing, nothing to check).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from harness.famfs.invariants import Invariant
from harness.oracle.invariants import InvariantViolation
from harness.oracle.model import Verdict

SUPERBLOCK_REGION = 4096


@dataclass(frozen=True, slots=True)
class CrossFile:
    """What fsck must report: overlap counts per daxdev and the out-of-bounds extents."""

    overlaps: tuple[tuple[int, int], ...]              # (daxdev, count), only non-zero counts
    out_of_bounds: tuple[tuple[str, int], ...]          # sorted (path, daxdev), one per extent


def expect(verdict: Verdict, log_end: int, real_sizes: Sequence[int | None]) -> CrossFile:
    """The cross-file findings of the model's namespace; `log_end` is where the primary's log
    region ends, `real_sizes[i]` the size of index i's device on this node."""
    spans: dict[int, list[tuple[int, int]]] = {0: [(0, max(SUPERBLOCK_REGION, log_end))]}
    for k in range(1, len(verdict.table)):
        spans[k] = [(0, SUPERBLOCK_REGION)]
    beyond = []
    for path, desc in verdict.namespace:
        if desc[0] != "f":
            continue
        for dev, off, ln in desc[5]:
            spans.setdefault(dev, []).append((off, off + ln))
            real = real_sizes[dev] if dev < len(real_sizes) else None
            if real is not None and off + ln > real:
                beyond.append((path, dev))
    overlaps = []
    for dev, s in sorted(spans.items()):
        runs, reach = 0, None
        for lo, hi in sorted(s):
            if reach is None or lo >= reach:
                runs += 1
                reach = hi
            else:
                reach = max(reach, hi)
        if len(s) - runs:
            overlaps.append((dev, len(s) - runs))
    return CrossFile(tuple(overlaps), tuple(sorted(beyond)))


def observed(report: Any, paths_by_entry: dict[int, str]) -> CrossFile:
    """The same shape, read off fsck's `FsckReport`."""
    overlaps: Counter[int] = Counter()
    beyond = []
    for f in report.findings:
        if f.invariant == Invariant.EXT_OVERLAP:
            overlaps[getattr(f, "daxdev", -1)] += 1
        elif f.invariant == Invariant.EXT_BOUNDS:
            beyond.append((paths_by_entry.get(f.entry, f"entry {f.entry}"), getattr(f, "daxdev", -1)))
    return CrossFile(tuple(sorted(overlaps.items())), tuple(sorted(beyond)))


def check_fsck(expected: Verdict, replayed: Any, log_end: int, real_sizes: Sequence[int | None]) -> int:
    """Run fsck on an accepted `replayed` image and compare with the model's cross-file answer.
    Returns the number of cross-file findings both agree on (an overlap or a bounds finding in an
    image is not a famfs bug: fsck finding it is the correct answer)."""
    from harness.famfs.fsck import fsck
    report = fsck(replayed, list(real_sizes))
    want = expect(expected, log_end, real_sizes)
    got = observed(report, {f.entry: f.path for f in replayed.namespace.files.values()})
    if got.overlaps != want.overlaps:
        raise InvariantViolation(Invariant.EXT_OVERLAP, f"fsck reports overlaps {dict(got.overlaps)} per daxdev, "
                                                        f"the model {dict(want.overlaps)}")
    if got.out_of_bounds != want.out_of_bounds:
        raise InvariantViolation(Invariant.EXT_BOUNDS, f"fsck reports extents past the device end "
                                                       f"{list(got.out_of_bounds)}, the model "
                                                       f"{list(want.out_of_bounds)}")
    return sum(n for _, n in want.overlaps) + len(want.out_of_bounds)
