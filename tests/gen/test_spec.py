"""gen/spec.py: `stamp`, and `BufferPool`'s canonical state across cases (stamped chunks kept,
what a case overwrote forgotten, the superblock region zero), so that `build` into reused
buffers gives the same image as `build` into fresh ones."""
from __future__ import annotations

import struct

from harness.famfs.layout import SUPERBLOCK_SIZE
from harness.gen.spec import STAMP_CHUNK, AddDaxdev, BufferPool, Create, Device, Spec, build, stamp

MiB = 1 << 20


def words(buf: bytearray, at: int) -> tuple[int, int]:
    return struct.unpack_from("<QQ", buf, at)


def test_stamp_marks_every_page_with_tag_and_offset_in_bulk_and_unaligned():
    a = bytearray(1 * MiB)
    stamp(a, 8192, 64 * 1024, 0xABC)
    assert [words(a, at) for at in range(8192, 8192 + 64 * 1024, 4096)] == \
        [(0xABC, at) for at in range(8192, 8192 + 64 * 1024, 4096)]
    assert words(a, 4096) == (0, 0) and words(a, 8192 + 64 * 1024) == (0, 0)
    b = bytearray(1 * MiB)
    stamp(b, 8195, 3 * 4096, 7)                     # not 8-byte aligned: the per-page path
    assert [words(b, at) for at in (8195, 8195 + 4096, 8195 + 8192)] == [(7, 8195), (7, 8195 + 4096), (7, 8195 + 8192)]
    c = bytearray(4096 + 8)                         # the last page too short for both words
    stamp(c, 0, len(c), 1)
    assert words(c, 0) == (1, 0) and c[4096:] == bytes(8)


def spec_on(sizes: tuple[int, ...], ops: tuple) -> Spec:
    return Spec(tuple(Device(bytes([k + 1]) * 16, s) for k, s in enumerate(sizes)), ops)


def file_pages(built, path: str) -> list[tuple[int, int]]:
    f = built.image.expected.files[path]
    (e,) = f.fmap.extents
    buf = built.devices[e.devindex]
    return [words(buf, at) for at in range(e.offset, e.offset + e.len, 4096)]


def test_pooled_build_keeps_stamps_and_restamps_what_a_log_overwrote():
    pool = BufferPool()
    two = (32 * MiB, 32 * MiB)
    on_secondary = (AddDaxdev(1), Create("b", 1 * MiB, devindex=1), Create("c", 4096))
    a = build(spec_on(two, on_secondary), pool, data="stamp")
    x, y = a.devices
    b = a.image.expected.files["b"].fmap.extents[0]
    assert b.offset == SUPERBLOCK_SIZE < 2 * STAMP_CHUNK       # chunk 1 of the secondary y: stamped
    tag_y = file_pages(a, "b")[0][0]
    assert file_pages(a, "b") == [(tag_y, at) for at in range(b.offset, b.offset + b.len, 4096)]
    tag_x = file_pages(a, "c")[0][0]
    assert tag_x and tag_y and tag_x != tag_y                   # two devices of a case never share a tag
    pool.give_back()
    second = build(spec_on(two, (Create("d", 4096),)), pool, data="stamp")
    assert second.devices[0] is y                               # y is the primary now: its log in chunk 1
    assert second.image.sb.log_offset == SUPERBLOCK_SIZE
    pool.give_back()
    third = build(spec_on(two, on_secondary), pool, data="stamp")
    assert third.devices[1] is y                                # y the secondary again: file b at 2 MiB
    assert file_pages(third, "b") == [(tag_y, at) for at in range(b.offset, b.offset + b.len, 4096)]
    pool.give_back()
    for buf in (x, y):                                          # the superblock region is zero between cases
        assert buf[:SUPERBLOCK_SIZE] == bytes(SUPERBLOCK_SIZE)


def test_pooled_build_equals_a_fresh_build_on_everything_the_checks_read():
    spec = spec_on((32 * MiB, 16 * MiB), (AddDaxdev(1), Create("a", 5 * MiB + 7), Create("c", 4096, devindex=1)))
    pool = BufferPool()
    for _ in range(3):                                # reused buffers, as a fuzz run reuses them
        pooled = build(spec, pool, data="stamp")
        fresh = build(spec, data="stamp")
        head = pooled.image.sb.log_offset + pooled.image.sb.log_len
        assert pooled.devices[0][200:head] == fresh.devices[0][200:head]     # all but the superblock (fresh fs UUID)
        assert pooled.devices[1][200:4096] == fresh.devices[1][200:4096]
        for path in ("a", "c"):
            assert [w[1] for w in file_pages(pooled, path)] == [w[1] for w in file_pages(fresh, path)]
        pool.give_back()


def test_a_buffer_lent_without_build_comes_back_with_its_stamps_forgotten():
    pool = BufferPool()
    built = build(spec_on((24 * MiB,), (Create("a", 2 * MiB),)), pool, data="stamp")
    buf = built.devices[0]
    pool.give_back()
    raw = pool.take(24 * MiB)                          # e.g. log_tail_case: writes anywhere
    assert raw is buf
    raw[:] = b"\xee" * len(raw)
    pool.give_back()
    again = build(spec_on((24 * MiB,), (Create("a", 2 * MiB),)), pool, data="stamp")
    assert again.devices[0] is buf
    assert all(w[0] != 0xEEEEEEEEEEEEEEEE for w in file_pages(again, "a"))
    assert buf[4096:SUPERBLOCK_SIZE] == bytes(SUPERBLOCK_SIZE - 4096)
