"""layout.py reads and writes famfs bytes exactly as the real famfs (golden image from 5d0919f),
and every struct round-trips."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings, strategies as st

from harness.famfs import layout as L
from harness.famfs.errors import FamfsError
from harness.famfs.replay import replay
from tests.common.golden import golden_head

LOG = 0x200000


def U(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def entries():
    head = golden_head()
    return list(L.iter_entries(head[LOG:LOG + L.LOG_LEN], 6))


def test_golden_superblock_is_what_the_readme_lists():
    head = golden_head()
    sb = L.Superblock.decode(head)
    assert (sb.magic, sb.version, sb.log_offset, sb.log_len, sb.alloc_unit) == \
        (0x87B282FF, 48, 0x200000, 0x800000, 0x200000)
    assert (sb.omf_major, sb.omf_minor) == (2, 2)
    assert U(sb.fs_uuid) == "1a32d4eb-9d24-4b84-8ce7-7bd14104a64d"
    assert U(sb.dev_uuid) == "66556e96-c3f3-4350-b874-ed606569d368"
    assert U(sb.system_uuid) == "e243a07a-b68e-4b6a-a464-83d44075a0fa"
    assert sb.crc == 0x453EB85E == sb.computed_crc()
    assert sb.flags == 0 and sb.dd_size == 1 << 30 and sb.dd_uuid == bytes(16) and sb.dd_daxdev == b"/dev/dax0.0"
    assert head[L.SUPERBLOCK.size:0x200000] == bytes(0x200000 - L.SUPERBLOCK.size)


def test_golden_log_header():
    h = L.LogHeader.decode(golden_head(), LOG)
    assert (h.magic, h.len, h.last_index, h.next_seqnum, h.next_index) == (0xBADCAFEF00D, 0x800000, 15419, 6, 6)
    assert h.crc == 0xA5875078 == h.computed_crc()


def test_golden_entries():
    e = entries()
    assert [x.seqnum for x in e] == list(range(6))
    assert all(x.crc == x.computed_crc() for x in e)
    assert e[0].type == L.EntryType.MKDIR and e[0].payload == L.Mkdir(0, 0, 0o755, b"dirA")
    assert e[1].payload == L.Mkdir(1000, 1000, 0o700, b"dirA/sub")
    f1, f2, st_ = e[2].payload, e[3].payload, e[4].payload
    assert (f1.relpath, f1.size, f1.flags, f1.uid, f1.gid, f1.mode) == (b"f1", 4096, 2, 0, 0, 0o644)
    assert f1.fmap.extents == (L.SimpleExtent(0, 0xA00000, 0x200000),)
    assert (f2.relpath, f2.size, f2.uid, f2.gid, f2.mode) == (b"dirA/f2", 5242880, 1000, 1000, 0o600)
    assert f2.fmap.extents == (L.SimpleExtent(0, 0xC00000, 0x600000),)
    assert (st_.relpath, st_.size, st_.flags, st_.mode) == (b"dirA/striped", 16777216, 2, 0o644)
    assert isinstance(st_.fmap, L.InterleavedFmap)
    assert (st_.fmap.niext, st_.fmap.nstrips, st_.fmap.chunk_size) == (1, 4, 0x200000)
    assert [(s.devindex, s.offset, s.len) for s in st_.fmap.strips] == [
        (0, 0x1200000, 0x400000), (0, 0x8000000, 0x400000), (0, 0x30000000, 0x400000), (0, 0x18000000, 0x400000)]
    assert e[5].type == L.EntryType.ADD_DAXDEV
    assert e[5].payload == L.AddDaxdev(1 << 30, bytes([0xAB]) * 16, 1)
    head = golden_head()
    assert head[LOG + L.entry_offset(6):LOG + L.LOG_LEN] == bytes(L.LOG_LEN - L.entry_offset(6))


def test_golden_reencodes_byte_for_byte():
    head = golden_head()
    rebuilt = bytearray(len(head))
    sb = L.Superblock.decode(head)
    rebuilt[0:L.SUPERBLOCK.size] = sb.encode()
    rebuilt[LOG:LOG + L.HEADER_SIZE] = L.LogHeader.decode(head, LOG).encode()
    for i, e in enumerate(entries()):
        at = LOG + L.entry_offset(i)
        assert e.encode() == head[at:at + L.ENTRY_SIZE], i
        rebuilt[at:at + L.ENTRY_SIZE] = e.encode()
    assert bytes(rebuilt) == head


def test_field_offsets_match_the_spec():
    assert L.field_span("superblock", "crc") == (96, 8)
    assert L.field_span("superblock", "flags") == (104, 4)
    assert L.field_span("superblock", "dd_size") == (112, 8)
    assert L.field_span("superblock", "dd_daxdev") == (136, 64)
    assert L.field_span("log_header", "next_index") == (40, 8)
    assert L.field_span("log_entry", "crc") == (536, 8)
    assert L.field_span("log_entry", "type") == (8, 4)
    assert L.field_span("file_meta", "relpath") == (16 + 24, 80)
    assert L.field_span("file_meta", "ext_type") == (120, 4)
    assert L.field_span("file_meta", "se0_devindex") == (136, 8)
    assert L.field_span("add_daxdev", "index") == (40, 4)
    assert L.field_span("mkdir", "relpath") == (28, 80)


def test_reseal_restores_every_crc_domain():
    head = bytearray(golden_head())
    broken = bytearray(head)
    for at in (96, LOG + 24, LOG + L.entry_offset(3) + 536):
        broken[at] ^= 0xFF
    L.reseal(broken, entries=False)
    assert broken[:LOG + L.entry_offset(3)] == head[:LOG + L.entry_offset(3)]
    assert broken != head
    L.reseal(broken)
    assert broken == head


# -- round trips -------------------------------------------------------------------------------

u64 = st.integers(0, (1 << 64) - 1)
u32 = st.integers(0, (1 << 32) - 1)
raw16 = st.binary(min_size=16, max_size=16)
path = st.binary(max_size=80).filter(lambda b: not b.endswith(b"\0"))
extent = st.builds(L.SimpleExtent, u64, u64, u64)
slots = st.lists(extent, min_size=16, max_size=16).map(tuple)
fmaps = st.one_of(
    st.builds(L.SimpleFmap, u32, slots),
    st.builds(L.InterleavedFmap, u32, u64, u64, slots),
    st.builds(L.RawFmap, u32.filter(lambda t: t > 1), u32, st.lists(u64, min_size=50, max_size=50).map(tuple)))
payloads = st.one_of(
    st.tuples(st.just(0), st.builds(L.FileMeta, u64, u32, u32, u32, u32, path, fmaps)),
    st.tuples(st.just(1), st.builds(L.Mkdir, u32, u32, u32, path)),
    st.tuples(st.just(3), st.builds(L.AddDaxdev, u64, raw16, u32)),
    st.tuples(u32.filter(lambda t: t not in (0, 1, 3)), st.builds(L.RawPayload, st.binary(min_size=520, max_size=520))))


@settings(max_examples=200, deadline=None)
@given(st.builds(L.Superblock, u64, u64, u64, u64, u64, u32, u32, raw16, raw16, raw16, u64, u32, u64, raw16,
                 st.binary(max_size=64).filter(lambda b: not b.endswith(b"\0"))))
def test_superblock_round_trip(sb):
    assert L.Superblock.decode(sb.encode()) == sb
    assert len(sb.encode()) == 200


@settings(max_examples=200, deadline=None)
@given(st.builds(L.LogHeader, u64, u64, u64, u64, u64, u64))
def test_header_round_trip(h):
    assert L.LogHeader.decode(h.encode()) == h


@settings(max_examples=300, deadline=None)
@given(u64, payloads, u64)
def test_entry_round_trip(seqnum, typed, crc):
    etype, payload = typed
    e = L.LogEntry(seqnum, etype, payload, crc)
    data = e.encode()
    assert len(data) == 544
    assert L.LogEntry.decode(data) == e
    assert L.LogEntry.decode(data).encode() == data          # canonical bytes re-encode identically


# -- the format described once: what is derived from the tables is famfs's documented layout -----

# famfs 5d0919f (docs/famfs-format.md sections 1-2), written out here by hand from the C structs:
# each CRC'd struct's size, the byte range its CRC covers, and where the CRC is stored.
DOCUMENTED_CRC = {               # struct: (size, covered [start, end), CRC field offset)
    "superblock": (200, (0, 96), 96),
    "log_header": (48, (0, 24), 24),
    "log_entry": (544, (0, 536), 536),
}
DOCUMENTED_ENTRY_CODECS = {      # a whole 544-byte entry, its payload read as one arm of the union
    "_FILE_ENTRY": "<QI4xQIIII80sI4xI4x50QQ",     # seqnum type | size flags uid gid mode relpath ext_type nextents
    "_MKDIR_ENTRY": "<QI4xIII80s428xQ",            #   | the 50 u64 union words | crc
    "_ADD_ENTRY": "<QI4xQ16sI4x488xQ",
    "ENTRY_HEAD": "<QI",
    "FILE_HEAD": "<QIIII80sI4xI4x",
    "FILE_SHAPE": "<Q4x4x4x4x80sI4xI4xQQQ",       # size relpath ext_type nextents | 3 union words
    "MKDIR_BODY": "<III80s",
    "MKDIR_PATH": "<80s",
    "ENTRY_READ": "<536sQ",                         # the CRC's range | crc
    "FILE_RECORD": "<Q4x4xQIIII80xI4xI4x",          # seqnum | size flags uid gid mode ext_type nextents
    "MKDIR_RECORD": "<Q4x4xIII",                    # seqnum | uid gid mode
    "ADD_DAXDEV_BODY": "<Q16sI4x",
}


def test_derived_entry_codecs_are_the_documented_structs():
    for name, fmt in DOCUMENTED_ENTRY_CODECS.items():
        assert getattr(L, name).format == fmt, name
    assert (L.PAYLOAD, L.PAYLOAD_LEN, L.FMAP_WORDS, L.FMAP_NWORDS, L.ENTRY_CRC_AT) == (16, 520, 136, 50, 536)
    assert (L.STRIPS_AT, L.MKDIR.offsets["relpath"]) == (152, 28)


def _value_crc(name: str, data: bytes) -> int | None:
    """The CRC the decoded value computes, or None for bytes a value does not keep (padding)."""
    cls = {"superblock": L.Superblock, "log_header": L.LogHeader, "log_entry": L.LogEntry}[name]
    value = cls.decode(data)
    return value.computed_crc() if value.encode() == data else None


def _specimen(name: str) -> bytes:
    """A sealed struct with non-zero bytes everywhere a field can hold them."""
    head = golden_head()
    at = {"superblock": 0, "log_header": LOG, "log_entry": LOG + L.entry_offset(2)}[name]
    return head[at:at + DOCUMENTED_CRC[name][0]]


@pytest.mark.parametrize("name", sorted(DOCUMENTED_CRC))
def test_crc_range_is_the_documented_one_at_both_ends(name):
    """Each byte of the struct is flipped in turn: the CRC that every reader and writer derives
    (`StructDesc.crc_over`, the value's `computed_crc` where a value holds the byte, `seal`) changes
    exactly for the bytes of the documented range, so a range one byte short or long at either end
    fails here."""
    desc = L.STRUCTS[name]
    size, (start, end), crc_at = DOCUMENTED_CRC[name]
    assert desc.crc is not None and (desc.size, desc.crc.start, desc.crc.end, desc.offsets[desc.crc.field]) == \
        (size, start, end, crc_at)
    data = _specimen(name)
    stored = desc.stored_crc(data)
    assert stored == desc.crc_over(data) == _value_crc(name, data) == int.from_bytes(data[crc_at:crc_at + 8], "little")
    changed = []
    for at in range(size):
        d = bytearray(data)
        d[at] ^= 0x5A
        derived = desc.crc_over(d)
        assert _value_crc(name, bytes(d)) in (derived, None), at
        desc.seal(d)
        assert desc.stored_crc(d) == derived, at
        if derived != stored:
            changed.append(at)
    assert changed == list(range(start, end))


@pytest.mark.parametrize("struct_name, at, expect", [
    ("superblock", 0, "bad magic"), ("superblock", 95, "CRC"),
    ("log_header", 0, "bad log magic"), ("log_header", 23, "CRC"),
])
def test_replay_checks_the_documented_header_ranges(struct_name, at, expect):
    """Replay's own checks use the same ranges: the first and the last covered byte of the
    superblock and of the log header make the image unusable."""
    dev = bytearray(golden_head())
    dev[(0 if struct_name == "superblock" else LOG) + at] ^= 1
    with pytest.raises(FamfsError, match=expect):
        replay(dev, device_size=1 << 30)


@pytest.mark.parametrize("at", [0, 535])
def test_replay_checks_the_documented_entry_range(at):
    """The first and the last covered byte of an entry end replay at that entry (LOG-PREFIX);
    the byte after the range is the CRC itself."""
    dev = bytearray(golden_head())
    dev[LOG + L.entry_offset(3) + at] ^= 1
    result = replay(dev, device_size=1 << 30)
    assert result.stopped_at == 3
    assert replay(bytearray(golden_head()), device_size=1 << 30).stopped_at is None


def test_header_crc_range():
    h = L.LogHeader.for_log(1 << 16)
    d = bytearray(h.encode())
    d[40] ^= 1                                                # next_index: not covered
    assert L.LogHeader.decode(d).computed_crc() == h.crc
    d[16] ^= 1                                                # last_index: covered
    assert L.LogHeader.decode(d).computed_crc() != h.crc
