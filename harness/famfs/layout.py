"""famfs on-media structs: superblock, log header, log entries, fmaps; bytes <-> values, and CRCs.

Every struct is declared once, as a table of (field, struct code) plus the CRC it carries and the
byte range that CRC covers (after syzkaller's `csum[...]`). Offsets are computed from the table,
encode/decode work from it, and fuzz operators name fields (`("log_entry", "seqnum")`) instead of
offsets. All formats are explicit little-endian x86_64 layouts, checked against an image written by
the real famfs (commit 5d0919f, `tests/famfs/test_layout.py`).

Decoding never validates and never raises for any bytes of the right length: validation is
replay's job. Bytes that no field covers (padding, the unused tail of a payload) are not kept; an
image written by famfs has them zero, and `encode(decode(b)) == b` holds for such images.
"""
from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, Iterator, NamedTuple, Union

from harness.famfs.ids import NIL_UUID, Uuid

# -- constants (docs/famfs-format.md sections 1-3) -------------------------------------------------

SUPER_MAGIC = 0x87B282FF
CURRENT_VERSION = 48
OMF_VER_MAJOR = 2
OMF_VER_MINOR = 2
LOG_MAGIC = 0xBADCAFEF00D
SUPERBLOCK_SIZE = 0x200000            # reserved region at the start of every daxdev
LOG_OFFSET = 0x200000
LOG_LEN = 0x800000
ALLOC_UNIT = 0x200000
ALLOC_UNITS_ACCEPTED = (4096, 0x200000)
PRIMARY_SB = 1 << 0
SECONDARY_SB = 1 << 1
MAX_PATHLEN = 80
MAX_SIMPLE_EXTENTS = 16
MAX_INTERLEAVED_EXTENTS = 1
MAX_STRIPS = 16
MAX_CHUNK_SIZE = (1 << 31)           # the largest power of two a GET_FMAP reply's u32 ie_chunk_size holds
MAX_DAXDEVS = 64
U64_MAX = (1 << 64) - 1


class EntryType(enum.IntEnum):
    """`enum famfs_log_entry_type`."""

    FILE = 0
    MKDIR = 1
    DELETE = 2        # declared by famfs, never written, never replayed
    ADD_DAXDEV = 3
    INVALID = 4       # sentinel


class ExtType(enum.IntEnum):
    """`fmap_ext_type`."""

    SIMPLE = 0
    INTERLEAVE = 1


# -- struct descriptions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Crc:
    """A CRC field: zlib crc32 over bytes [start, end) of its struct, stored in `field`."""

    field: str
    start: int
    end: int


@dataclass(frozen=True)
class StructDesc:
    """One on-media struct: its fields in order, their codes, offsets, and its CRC if any."""

    name: str
    fields: tuple[tuple[str, str], ...]
    crc: Crc | None = None
    base: int = 0                      # offset of this struct inside its container (payloads)
    codec: struct.Struct = field(init=False)
    offsets: dict[str, int] = field(init=False)
    codes: dict[str, str] = field(init=False)          # name -> struct code, and size, looked up
    sizes: dict[str, int] = field(init=False)          # per field by the mutators on every edit

    def __post_init__(self) -> None:
        fmt, offsets = "<", {}
        for name, code in self.fields:
            offsets[name] = self.base + struct.calcsize(fmt)
            fmt += code
        object.__setattr__(self, "codec", struct.Struct(fmt))
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "codes", dict(self.fields))
        object.__setattr__(self, "sizes", {name: struct.calcsize("<" + code) for name, code in self.fields})
        if self.crc is not None:     # the range lies inside the struct and leaves the CRC field out
            c, at = self.crc, offsets[self.crc.field]
            assert 0 <= c.start < c.end <= self.codec.size, (self.name, c)
            assert at + self.field_size(c.field) <= c.start or at >= c.end, (self.name, c)

    @property
    def size(self) -> int:
        return self.codec.size

    def code(self, name: str) -> str:
        return self.codes[name]

    def field_size(self, name: str) -> int:
        return self.sizes[name]

    def names(self) -> list[str]:
        return [name for name, code in self.fields if not code.endswith("x")]

    def head(self, upto: str) -> struct.Struct:
        """The codec of this struct's fields before field `upto` (a prefix read on its own)."""
        stop = [name for name, _ in self.fields].index(upto)
        return struct.Struct("<" + "".join(code for _, code in self.fields[:stop]))

    def skim(self, upto: str, *names: str) -> struct.Struct:
        """The codec of this struct's fields before field `upto` that reads only `names` and
        skips the others as padding (a prefix read for a few of its fields)."""
        stop = [name for name, _ in self.fields].index(upto)
        return struct.Struct("<" + "".join(code if name in names else f"{struct.calcsize('<' + code)}x"
                                           for name, code in self.fields[:stop]))

    def part(self, *names: str) -> struct.Struct:
        """The codec of the named fields, contiguous and in this order (a run read on its own)."""
        return struct.Struct("<" + "".join(self.code(name) for name in names))

    # -- the CRC this struct carries: every reader and writer goes through these ----------------

    def checked_crc(self) -> Crc:
        """This struct's CRC descriptor (ValueError for a struct without one)."""
        if self.crc is None:
            raise ValueError(f"{self.name} carries no CRC")
        return self.crc

    def crc_over(self, buf: bytes | bytearray | memoryview, at: int = 0) -> int:
        """The CRC of the struct at `buf[at:]` as computed over its documented range."""
        c = self.checked_crc()
        return crc32(buf[at + c.start:at + c.end])

    def stored_crc(self, buf: bytes | bytearray | memoryview, at: int = 0) -> int:
        """The CRC field of the struct at `buf[at:]` as stored."""
        value: int = self._crc_codec.unpack_from(buf, at + self.offsets[self.checked_crc().field])[0]
        return value

    def seal(self, buf: bytearray | memoryview, at: int = 0) -> None:
        """Recompute the CRC of the struct at `buf[at:]` in place (what famfs stores)."""
        self._crc_codec.pack_into(buf, at + self.offsets[self.checked_crc().field], self.crc_over(buf, at))

    @cached_property
    def _crc_codec(self) -> struct.Struct:
        return struct.Struct("<" + self.code(self.checked_crc().field))


def _pad(n: int) -> tuple[str, str]:
    return ("_pad", f"{n}x")


SUPERBLOCK = StructDesc("superblock", (
    ("magic", "Q"), ("version", "Q"), ("log_offset", "Q"), ("log_len", "Q"), ("alloc_unit", "Q"),
    ("omf_major", "I"), ("omf_minor", "I"), ("fs_uuid", "16s"), ("dev_uuid", "16s"),
    ("system_uuid", "16s"), ("crc", "Q"), ("flags", "I"), _pad(4),
    ("dd_size", "Q"), ("dd_uuid", "16s"), ("dd_daxdev", "64s"),
), crc=Crc("crc", 0, 96))

LOG_HEADER = StructDesc("log_header", (
    ("magic", "Q"), ("len", "Q"), ("last_index", "Q"), ("crc", "Q"),
    ("next_seqnum", "Q"), ("next_index", "Q"),
), crc=Crc("crc", 0, 24))

LOG_ENTRY = StructDesc("log_entry", (
    ("seqnum", "Q"), ("type", "I"), _pad(4), ("payload", "520s"), ("crc", "Q"),
), crc=Crc("crc", 0, 536))

PAYLOAD = 16                                   # offset of the payload union inside an entry

FILE_META = StructDesc("file_meta", (
    ("size", "Q"), ("flags", "I"), ("uid", "I"), ("gid", "I"), ("mode", "I"), ("relpath", "80s"),
    ("ext_type", "I"), _pad(4), ("nextents", "I"), _pad(4),
    *((f"se{i}_{f}", "Q") for i in range(MAX_SIMPLE_EXTENTS) for f in ("devindex", "offset", "len")),
), base=PAYLOAD)

INTERLEAVE_META = StructDesc("interleave_meta", (   # the fmap union read as its interleaved arm
    ("size", "Q"), ("flags", "I"), ("uid", "I"), ("gid", "I"), ("mode", "I"), ("relpath", "80s"),
    ("ext_type", "I"), _pad(4), ("niext", "I"), _pad(4), ("nstrips", "Q"), ("chunk_size", "Q"),
    *((f"st{i}_{f}", "Q") for i in range(MAX_STRIPS) for f in ("devindex", "offset", "len")),
), base=PAYLOAD)

MKDIR = StructDesc("mkdir", (
    ("uid", "I"), ("gid", "I"), ("mode", "I"), ("relpath", "80s"),
), base=PAYLOAD)

ADD_DAXDEV = StructDesc("add_daxdev", (
    ("size", "Q"), ("uuid", "16s"), ("index", "I"), _pad(4),
), base=PAYLOAD)

STRUCTS: dict[str, StructDesc] = {d.name: d for d in
                                  (SUPERBLOCK, LOG_HEADER, LOG_ENTRY, FILE_META, INTERLEAVE_META, MKDIR, ADD_DAXDEV)}

ENTRY_SIZE = LOG_ENTRY.size
HEADER_SIZE = LOG_HEADER.size
FMAP_OFFSET = FILE_META.offsets["ext_type"] - PAYLOAD   # 104, inside the payload
FMAP_SIZE = 416

assert SUPERBLOCK.size == 200 and HEADER_SIZE == 48 and ENTRY_SIZE == 544
assert INTERLEAVE_META.size == 520 and FILE_META.size == 504   # the union's largest arm fills the payload
assert FMAP_OFFSET == 104

# Codecs, all derived from the tables above. Replay reads an entry in three unpacks (its bytes and
# CRC, the head, the fields its checks test) and builds no LogEntry; encode packs a whole entry in
# one, its payload read as one arm of the union.
PAYLOAD_LEN = LOG_ENTRY.field_size("payload")                # 520: the payload union
ENTRY_CRC_AT = LOG_ENTRY.offsets["crc"]                      # 536
ENTRY_CRC = LOG_ENTRY.checked_crc()                          # for hot loops: the range as plain ints
FMAP_WORDS = FILE_META.offsets["se0_devindex"]               # the fmap union's u64 words, from here
FMAP_NWORDS = (PAYLOAD + PAYLOAD_LEN - FMAP_WORDS) // 8      # 50: to the end of the payload
_EXTENT = FILE_META.part("se0_devindex", "se0_offset", "se0_len")
_U64_PAIR = INTERLEAVE_META.part("nstrips", "chunk_size")     # an interleaved extent's nstrips, chunk_size
_UNION = struct.Struct(f"<{FMAP_NWORDS}Q")                    # the fmap union as words (RawFmap)


def _entry_codec(arm: tuple[tuple[str, str], ...]) -> struct.Struct:
    """A whole entry whose payload is read as `arm`'s fields, zero-padded to the payload's size."""
    fmt = "<"
    for name, code in LOG_ENTRY.fields:
        if name == "payload":
            body = "".join(c for _, c in arm)
            fmt += body + (f"{PAYLOAD_LEN - struct.calcsize('<' + body)}x" if struct.calcsize("<" + body) < PAYLOAD_LEN
                           else "")
        else:
            fmt += code
    codec = struct.Struct(fmt)
    assert codec.size == ENTRY_SIZE, (arm, codec.format)
    return codec


def _fields_before(desc: StructDesc, upto: str) -> tuple[tuple[str, str], ...]:
    return desc.fields[:[name for name, _ in desc.fields].index(upto)]


_FILE_ENTRY = _entry_codec(_fields_before(FILE_META, "se0_devindex") + (("fmap", f"{FMAP_NWORDS}Q"),))
_MKDIR_ENTRY = _entry_codec(MKDIR.fields)
_ADD_ENTRY = _entry_codec(ADD_DAXDEV.fields)
ENTRY_HEAD = LOG_ENTRY.head("_pad")                          # seqnum, type
FILE_HEAD = FILE_META.head("se0_devindex")                   # size .. nextents (at PAYLOAD)
FILE_SHAPE = FILE_META.skim("se1_devindex", "size", "relpath", "ext_type", "nextents",
                            "se0_devindex", "se0_offset", "se0_len")   # (at PAYLOAD) what replay's fast
                                                             # paths test: the union's first 3 words
MKDIR_BODY = MKDIR.codec                                     # (at PAYLOAD)
ADD_DAXDEV_BODY = ADD_DAXDEV.codec                           # (at PAYLOAD)
# Replay reads each entry once, as (its bytes up to the CRC field, the stored CRC): the bytes the
# CRC covers are the bytes it parses, and the record it keeps of an entry it accepted
# (namespace.Nodes). A record is read back into its value by one unpack from its start of the
# fields the value holds (FILE_RECORD, MKDIR_RECORD: seqnum first), plus `fmap_at` at FMAP_WORDS.
ENTRY_READ = struct.Struct(f"<{ENTRY_CRC.end}s{LOG_ENTRY.code('crc')}")
_SEQNUM = LOG_ENTRY.skim("payload", "seqnum").format
FILE_RECORD = struct.Struct(_SEQNUM + FILE_META.skim("se0_devindex", "size", "flags", "uid", "gid", "mode",
                                                     "ext_type", "nextents").format[1:])
MKDIR_RECORD = struct.Struct(_SEQNUM + MKDIR.skim("relpath", "uid", "gid", "mode").format[1:])
MKDIR_PATH = MKDIR.part("relpath")                           # (at MKDIR.offsets["relpath"])
EXTENT = _EXTENT                                             # one (devindex, offset, len) slot
STRIPS_AT = INTERLEAVE_META.offsets["st0_devindex"]          # an interleaved fmap's strip slots
_ZERO_BYTES = bytes(_EXTENT.size * MAX_SIMPLE_EXTENTS)
assert FILE_HEAD.size == FMAP_WORDS - PAYLOAD and FMAP_WORDS + _UNION.size == ENTRY_CRC_AT
assert ENTRY_CRC.start == 0 and ENTRY_CRC.end == ENTRY_CRC_AT and ENTRY_READ.size == ENTRY_SIZE
assert FILE_RECORD.size == FMAP_WORDS and MKDIR_RECORD.size == MKDIR.offsets["relpath"]
assert INTERLEAVE_META.offsets["nstrips"] == FMAP_WORDS
assert INTERLEAVE_META.offsets["st0_devindex"] == FMAP_WORDS + _U64_PAIR.size


# famfs's CRC: zlib crc32 seeded with 0, `crc32(data) -> int`. zlib's own function, not a wrapper:
# replay calls it once per entry, and since Python 3 it returns the unsigned 32-bit value already.
crc32 = zlib.crc32


def log_slots(log_len: int) -> int:
    """Number of entry slots in a log of `log_len` bytes (famfs: last_index + 1)."""
    return max(0, (log_len - HEADER_SIZE) // ENTRY_SIZE)


# -- values ----------------------------------------------------------------------------------------


_SB_NAMES = SUPERBLOCK.names()


@dataclass(frozen=True, slots=True)
class Superblock:
    """`struct famfs_superblock` (200 bytes at device offset 0). UUIDs are 16 raw bytes."""

    magic: int = SUPER_MAGIC
    version: int = CURRENT_VERSION
    log_offset: int = LOG_OFFSET
    log_len: int = LOG_LEN
    alloc_unit: int = ALLOC_UNIT
    omf_major: int = OMF_VER_MAJOR
    omf_minor: int = OMF_VER_MINOR
    fs_uuid: Uuid = NIL_UUID
    dev_uuid: Uuid = NIL_UUID
    system_uuid: Uuid = NIL_UUID
    crc: int = 0
    flags: int = 0
    dd_size: int = 0
    dd_uuid: Uuid = NIL_UUID
    dd_daxdev: bytes = b""             # NUL-padded to 64 on media; stored without trailing NULs

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> "Superblock":
        fields: dict[str, Any] = dict(zip(_SB_NAMES, SUPERBLOCK.codec.unpack_from(buf, offset), strict=True))
        fields["dd_daxdev"] = fields["dd_daxdev"].rstrip(b"\0")
        return cls(**fields)

    def encode(self) -> bytes:
        return SUPERBLOCK.codec.pack(
            self.magic, self.version, self.log_offset, self.log_len, self.alloc_unit,
            self.omf_major, self.omf_minor, self.fs_uuid, self.dev_uuid, self.system_uuid,
            self.crc, self.flags, self.dd_size, self.dd_uuid, self.dd_daxdev)

    def computed_crc(self) -> int:
        return SUPERBLOCK.crc_over(self.encode())

    def sealed(self) -> "Superblock":
        """This superblock with its CRC recomputed."""
        return replace(self, crc=self.computed_crc())


@dataclass(frozen=True, slots=True)
class LogHeader:
    """`struct famfs_log` header (48 bytes at the log offset)."""

    magic: int = LOG_MAGIC
    len: int = LOG_LEN
    last_index: int = log_slots(LOG_LEN) - 1
    crc: int = 0
    next_seqnum: int = 0
    next_index: int = 0

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> "LogHeader":
        return cls(*LOG_HEADER.codec.unpack_from(buf, offset))

    @classmethod
    def for_log(cls, log_len: int) -> "LogHeader":
        return cls(len=log_len, last_index=log_slots(log_len) - 1).sealed()

    def encode(self) -> bytes:
        return LOG_HEADER.codec.pack(self.magic, self.len, self.last_index, self.crc,
                                     self.next_seqnum, self.next_index)

    def computed_crc(self) -> int:
        return LOG_HEADER.crc_over(self.encode())

    def sealed(self) -> "LogHeader":
        return replace(self, crc=self.computed_crc())


class SimpleExtent(NamedTuple):
    """`famfs_simple_extent`: a byte range of daxdev `devindex` (all u64 on media).

    A NamedTuple rather than a frozen dataclass: replay builds one per used fmap slot, and tuple
    construction is several times cheaper; it is just as immutable."""

    devindex: int
    offset: int
    len: int


ZERO_EXTENT = SimpleExtent(0, 0, 0)


def _slots(extents: tuple[SimpleExtent, ...] | list[SimpleExtent], n: int) -> tuple[SimpleExtent, ...]:
    extents = tuple(extents)
    if len(extents) > n:
        raise ValueError(f"at most {n} extents fit in an fmap, got {len(extents)}")
    return extents + (ZERO_EXTENT,) * (n - len(extents))


@dataclass(slots=True, unsafe_hash=True)    # immutable by convention: see _HOT
class SimpleFmap:
    """An fmap of simple extents. `slots` holds all 16 on-media slots; `nextents` is the raw count."""

    nextents: int
    slots: tuple[SimpleExtent, ...]
    ext_type: int = ExtType.SIMPLE

    @classmethod
    def of(cls, extents: list[SimpleExtent] | tuple[SimpleExtent, ...]) -> "SimpleFmap":
        return cls(len(extents), _slots(extents, MAX_SIMPLE_EXTENTS))

    @property
    def extents(self) -> tuple[SimpleExtent, ...]:
        return self.slots[: min(self.nextents, MAX_SIMPLE_EXTENTS)]

    def words(self) -> tuple[int, int, list[int]]:
        flat = [w for se in self.slots for w in (se.devindex, se.offset, se.len)]
        return self.ext_type, self.nextents, flat + [0, 0]


@dataclass(slots=True, unsafe_hash=True)    # immutable by convention: see _HOT
class InterleavedFmap:
    """An fmap with one interleaved extent (`ie[1]`): `nstrips` strips of `chunk_size` chunks."""

    niext: int
    nstrips: int
    chunk_size: int
    strip_slots: tuple[SimpleExtent, ...]
    ext_type: int = ExtType.INTERLEAVE

    @classmethod
    def of(cls, chunk_size: int, strips: list[SimpleExtent] | tuple[SimpleExtent, ...]) -> "InterleavedFmap":
        return cls(1, len(strips), chunk_size, _slots(strips, MAX_STRIPS))

    @property
    def strips(self) -> tuple[SimpleExtent, ...]:
        return self.strip_slots[: min(self.nstrips, MAX_STRIPS)]

    def words(self) -> tuple[int, int, list[int]]:
        flat = [w for se in self.strip_slots for w in (se.devindex, se.offset, se.len)]
        return self.ext_type, self.niext, [self.nstrips, self.chunk_size] + flat


@dataclass(slots=True, unsafe_hash=True)    # immutable by convention: see _HOT
class RawFmap:
    """An fmap whose ext_type famfs does not know; the union words are kept as read."""

    ext_type: int
    count: int
    body: tuple[int, ...]              # the 50 u64 words of the union

    def words(self) -> tuple[int, int, list[int]]:
        return self.ext_type, self.count, list(self.body)


Fmap = Union[SimpleFmap, InterleavedFmap, RawFmap]

# _HOT: the fmap classes above (and namespace's `Dir` and `File`) are slotted dataclasses that are
# not `frozen`: replay builds one or two per entry, and a frozen dataclass's `__init__` sets every
# field through `object.__setattr__`, about 4x the cost of a plain one. They are values all the
# same (equal by fields, hashable): nothing assigns to a field after construction, and
# `tests/famfs/test_replay.py` checks that replay's values are not changed by anything that reads them.


# Extent slots are NamedTuples built straight from unpacked (devindex, offset, len) triples;
# `tuple.__new__` skips the NamedTuple's Python-level __new__, which costs more than the tuple.
_extent = partial(tuple.__new__, SimpleExtent)
_ZERO_SLOTS = tuple((ZERO_EXTENT,) * (MAX_SIMPLE_EXTENTS - k) for k in range(MAX_SIMPLE_EXTENTS + 1))
_EXTENT_SIZE, _SLOTS_SIZE = _EXTENT.size, _EXTENT.size * MAX_SIMPLE_EXTENTS
_ZERO_TAILS = tuple(_ZERO_BYTES[_EXTENT_SIZE * k:] for k in range(MAX_SIMPLE_EXTENTS + 1))  # slots k.. as zeros


def extents_at(buf: bytes | bytearray | memoryview, offset: int, used: int) -> tuple[SimpleExtent, ...]:
    """The 16 extent slots whose words start at `offset`, of which the first `used` (0..16) are in
    use. Only those are unpacked when the rest are zero bytes (all famfs writes): the unused slots
    are then one shared tuple. Otherwise every slot is read, so `encode` gives the bytes back."""
    stop = offset + _EXTENT_SIZE * used
    end = offset + _SLOTS_SIZE
    # bytes(): a memoryview compares with bytes item by item, a bytes object with memcmp
    if bytes(buf[stop:end]) != _ZERO_TAILS[used]:
        return tuple(map(_extent, _EXTENT.iter_unpack(buf[offset:end])))
    if used == 1:                                                  # the common case, unrolled
        return (_extent(_EXTENT.unpack_from(buf, offset)),) + _ZERO_SLOTS[1]
    return tuple(map(_extent, _EXTENT.iter_unpack(buf[offset:stop]))) + _ZERO_SLOTS[used]


_SIMPLE, _INTERLEAVE = int(ExtType.SIMPLE), int(ExtType.INTERLEAVE)   # plain ints: enum lookups cost


def fmap_at(buf: bytes | bytearray | memoryview, offset: int, ext_type: int, count: int) -> "Fmap":
    """Decode the fmap union whose 50 words start at `offset` (`FMAP_WORDS` inside an entry), given
    its ext_type and count words. Never validates: replay checks the shape."""
    if ext_type == _SIMPLE:
        return SimpleFmap(count, extents_at(buf, offset, min(count, MAX_SIMPLE_EXTENTS)))
    if ext_type == _INTERLEAVE:
        nstrips, chunk = _U64_PAIR.unpack_from(buf, offset)
        strips = extents_at(buf, offset + _U64_PAIR.size, min(nstrips, MAX_STRIPS))
        return InterleavedFmap(count, nstrips, chunk, strips)
    return RawFmap(ext_type, count, _UNION.unpack_from(buf, offset))


@dataclass(frozen=True, slots=True)
class FileMeta:
    """`famfs_log_file_meta`: a FILE entry's payload. `relpath` is the raw field, trailing NULs cut."""

    size: int
    flags: int
    uid: int
    gid: int
    mode: int
    relpath: bytes
    fmap: Fmap


@dataclass(frozen=True, slots=True)
class Mkdir:
    """`famfs_log_mkdir`: a MKDIR entry's payload."""

    uid: int
    gid: int
    mode: int
    relpath: bytes


@dataclass(frozen=True, slots=True)
class AddDaxdev:
    """`famfs_log_add_daxdev`: defines daxdev `index` as `uuid` (16 raw bytes) of `size` bytes."""

    size: int
    uuid: Uuid
    index: int


@dataclass(frozen=True, slots=True)
class RawPayload:
    """The payload of an entry whose type has no payload struct (DELETE, INVALID, unknown)."""

    data: bytes


Payload = Union[FileMeta, Mkdir, AddDaxdev, RawPayload]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One 544-byte log entry. `type` is the raw u32 (an `EntryType` when famfs knows it)."""

    seqnum: int
    type: int
    payload: Payload
    crc: int = 0

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> "LogEntry":
        seqnum, etype = ENTRY_HEAD.unpack_from(buf, offset)
        crc = LOG_ENTRY.stored_crc(buf, offset)
        at = offset + PAYLOAD
        if etype == EntryType.FILE:
            size, flags, uid, gid, mode, relpath, ext_type, count = FILE_HEAD.unpack_from(buf, at)
            payload: Payload = FileMeta(size, flags, uid, gid, mode, relpath.rstrip(b"\0"),
                                        fmap_at(buf, offset + FMAP_WORDS, ext_type, count))
        elif etype == EntryType.MKDIR:
            uid, gid, mode, relpath = MKDIR_BODY.unpack_from(buf, at)
            payload = Mkdir(uid, gid, mode, relpath.rstrip(b"\0"))
        elif etype == EntryType.ADD_DAXDEV:
            payload = AddDaxdev(*ADD_DAXDEV_BODY.unpack_from(buf, at))
        else:
            payload = RawPayload(bytes(buf[offset + PAYLOAD: offset + PAYLOAD + PAYLOAD_LEN]))
        return cls(seqnum, etype, payload, crc)

    def encode(self) -> bytes:
        """The entry's 544 bytes with the CRC as stored in this value (see `sealed`)."""
        p = self.payload
        if isinstance(p, FileMeta):
            ext_type, count, words = p.fmap.words()
            return _FILE_ENTRY.pack(self.seqnum, self.type, p.size, p.flags, p.uid, p.gid, p.mode,
                                    p.relpath, ext_type, count, *words, self.crc)
        if isinstance(p, Mkdir):
            return _MKDIR_ENTRY.pack(self.seqnum, self.type, p.uid, p.gid, p.mode, p.relpath, self.crc)
        if isinstance(p, AddDaxdev):
            return _ADD_ENTRY.pack(self.seqnum, self.type, p.size, p.uuid, p.index, self.crc)
        return LOG_ENTRY.codec.pack(self.seqnum, self.type, p.data[:PAYLOAD_LEN], self.crc)

    def computed_crc(self) -> int:
        return LOG_ENTRY.crc_over(self.encode())

    def sealed(self) -> "LogEntry":
        """This entry with its CRC recomputed (what famfs's appender writes)."""
        return replace(self, crc=self.computed_crc())


# -- whole-region helpers --------------------------------------------------------------------------


def entry_offset(index: int) -> int:
    """Offset of entry slot `index` from the start of the log."""
    return HEADER_SIZE + ENTRY_SIZE * index


def iter_entries(log: bytes | bytearray | memoryview, count: int) -> Iterator[LogEntry]:
    """Decode the first `count` entry slots of a log region (no validation)."""
    for i in range(min(count, log_slots(len(log)))):
        yield LogEntry.decode(log, entry_offset(i))


def field_span(struct_name: str, field_name: str) -> tuple[int, int]:
    """(offset, size) of a named field: superblock fields from the device start, log_header fields
    from the log start, entry and payload fields from the entry start."""
    desc = STRUCTS[struct_name]
    return desc.offsets[field_name], desc.sizes[field_name]


def reseal(device: bytearray | memoryview, *, entries: bool = True) -> None:
    """Recompute all three CRC domains of a primary device image in place: the superblock, the log
    header, and (if `entries`) every entry slot below the header's next_index that lies in the log.
    Every writer that stores a CRC goes through `StructDesc.seal` (this, mkfs and the appender via
    the values' `sealed`, the mutators). Fuzz operators that want corruption to reach replay logic
    call this; stale ones do not."""
    if len(device) < SUPERBLOCK.size:
        return
    SUPERBLOCK.seal(device)
    sb = Superblock.decode(device)
    log_off, log_len = sb.log_offset, sb.log_len
    if log_off + HEADER_SIZE > len(device):
        return
    LOG_HEADER.seal(device, log_off)
    if not entries:
        return
    header = LogHeader.decode(device, log_off)
    end = min(log_off + log_len, len(device))
    for i in range(min(header.next_index, log_slots(end - log_off))):
        LOG_ENTRY.seal(device, log_off + entry_offset(i))
