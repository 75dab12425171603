"""fsck: allocation collisions (EXT-OVERLAP), extents past a device's real size, per-device counts."""
from __future__ import annotations

import uuid

from harness.famfs.fsck import fsck
from harness.famfs.invariants import Invariant
from harness.famfs.layout import EntryType, FileMeta, SimpleExtent, SimpleFmap
from harness.famfs.replay import replay
from harness.gen.spec import AddDaxdev, Create, Device, Spec, build

MiB = 1 << 20


def two_device_image():
    spec = Spec((Device(uuid.UUID(int=1).bytes, 32 * MiB), Device(uuid.UUID(int=2).bytes, 16 * MiB)),
                (AddDaxdev(1), Create("a", 3 * MiB), Create("b", 2 * MiB, devindex=1),
                 Create("s", 4 * MiB, strips=(0, 1))))
    return build(spec)


def clone(built, path: str, like: str) -> None:
    """Append a FILE entry sharing the extents of `like` (what `famfs clone` does on purpose)."""
    f = built.image.expected.files[like]
    built.image.log.append(EntryType.FILE, FileMeta(f.size, 2, 0, 0, 0o644, path.encode(), f.fmap))


def test_clean_image_counts_per_device():
    built = two_device_image()
    report = fsck(replay(built.primary))
    assert report.clean
    usage = {u.index: u for u in report.devices}
    assert (usage[0].files, usage[0].extents, usage[0].allocated) == (2, 2, 4 * MiB + 2 * MiB)
    assert (usage[1].files, usage[1].extents, usage[1].allocated) == (2, 2, 2 * MiB + 2 * MiB)


def test_cross_linked_files_collide():
    built = two_device_image()
    clone(built, "a-clone", "a")
    clone(built, "s-clone", "s")
    report = fsck(replay(built.primary))
    assert [(e.invariant, e.entry) for e in report.findings] == [
        (Invariant.EXT_OVERLAP, 4), (Invariant.EXT_OVERLAP, 5), (Invariant.EXT_OVERLAP, 5)]
    assert "a-clone" in report.findings[0].message and "'a'" in report.findings[0].message


def test_partial_overlap_is_found_whatever_the_log_order():
    built = two_device_image()
    a = built.image.expected.files["a"].fmap.extents[0]
    built.image.log.append(EntryType.FILE, FileMeta(MiB, 2, 0, 0, 0o644, b"tail",
                                                    SimpleFmap.of([SimpleExtent(0, a.offset + 2 * MiB, 2 * MiB)])))
    report = fsck(replay(built.primary))
    assert [e.invariant for e in report.findings] == [Invariant.EXT_OVERLAP]


def test_extent_past_the_real_device_is_a_finding():
    built = two_device_image()
    result = replay(built.primary)
    assert fsck(result, [None, 16 * MiB]).clean
    report = fsck(result, [None, 4 * MiB])              # index 1 is smaller here than the log says
    assert {e.invariant for e in report.findings} == {Invariant.EXT_BOUNDS}


def test_huge_device_size_costs_no_memory():
    """ADD_DAXDEV may carry any u64 size: fsck works on intervals, never a bitmap of the device."""
    spec = Spec((Device(uuid.UUID(int=1).bytes, 32 * MiB), Device(uuid.UUID(int=2).bytes, 16 * MiB)), ())
    built = build(spec)
    built.image.add_daxdev(uuid.UUID(int=3).bytes, (1 << 64) - (1 << 21))
    built.image.log.append(EntryType.FILE, FileMeta(MiB, 2, 0, 0, 0o644, b"far",
                                                    SimpleFmap.of([SimpleExtent(1, (1 << 63), 2 * MiB)])))
    report = fsck(replay(built.primary))
    assert report.clean and report.devices[1].allocated == 2 * MiB
