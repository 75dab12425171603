"""Famfs-aware mutators: decode an input, change one field, entry, device or choice with a named
operator, reseal, re-encode (libFuzzer's custom-mutator convention, `(data, max_size, seed)`).

Why: every log entry carries a CRC, so a byte edit inside an entry ends replay at LOG-PREFIX and
libFuzzer's own mutations never apply an entry the seeds do not already have. These mutators
work on the decoded form and reseal, so an edit reaches replay's shape, path, index and bounds
checks; 1..4 operators are stacked per input, so bugs needing two coordinated edits (two
entries, or one entry wrong in two ways) are in reach.

Three input formats, one mutator family each:

* **compact images** (`log_image`, target `log_replay`): `Log` splits the bytes into superblock,
  log header and 544-byte entries. Operators (`IMAGE_OPERATORS`, each named for what it does)
  set a field to a boundary value (0, 1, limit-1, limit, limit+1, 2^32-1, 2^32, 2^64-1 where the
  field has a limit: nextents 16, nstrips 16, the daxdev table's 24 / 64 slots, the defined
  indices, the 80-byte relpath), swap / duplicate / delete / insert entries, retarget an fmap's
  devindex, change an ADD_DAXDEV index or UUID, give a path a near-miss shape (`..`, `a/../b`,
  79 / 80-byte names, a trailing slash, `.meta`), make a size or a strip length not a multiple of
  the chunk, fill the daxdev table to its limit, give a file 16 extents or 16 strips, or run
  libFuzzer's own mutation over one entry's payload only. Then `Log.reseal` recomputes entry CRCs,
  seqnums if entries moved, the header's counters and CRC and the superblock CRC; one input in
  ten stays stale on purpose (the CRC checks themselves are targets too).
* **region overlays** (`region("superblock" | "log_header")`, targets `superblock`, `log_header`):
  byte 0 is the reseal bit, the rest one struct; a named field is set to a boundary value.
* **choice streams** (`choice_stream(...)`, the structured targets): the stream is decoded with
  `gen.decode.spec` under a recording `Choices`, so every draw's byte span and range are known;
  an operator sets one draw to a boundary of its range (or to one of the decoder's extended
  values, inserting the extra bytes it needs so later draws stay aligned), fills the daxdev
  table (the device count set to the kernel's 24 slots, or 23), duplicates, drops or swaps
  whole operations (keeping the op count right), or changes the bytes after the spec
  (corruption seed and mode).

Every mutator falls back to byte mutation (libFuzzer's `atheris.Mutate` when running under
Atheris, else bit flips and splices) when the input does not decode, and never raises
(STYLE rule 9): a mutator exception would end the campaign.
"""
from __future__ import annotations

import random
import struct
import sys
from typing import Callable, Iterator

from harness.famfs import layout as L

Mutator = Callable[[bytes, int, int], bytes]

U32, U64 = (1 << 32) - 1, (1 << 64) - 1
WIDE = (0, 1, U32, U32 + 1, U64)                 # boundaries of every integer field
TABLE_LIMITS = (24, 64)                          # daxdev slots: V-series kernels, newest trees / replay
AU = L.ALLOC_UNIT
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
FILE, MKDIR, ADD = int(L.EntryType.FILE), int(L.EntryType.MKDIR), int(L.EntryType.ADD_DAXDEV)


def around(limit: int) -> tuple[int, ...]:
    """limit-1, limit, limit+1 (clipped at 0)."""
    return tuple(v for v in (limit - 1, limit, limit + 1) if v >= 0)


# -- byte mutation (the fallback) -------------------------------------------------------------------


def byte_mutate(data: bytes, max_size: int, rng: random.Random) -> bytes:
    """libFuzzer's own mutation under Atheris (its CMP tables steer it), else flips and splices."""
    atheris = sys.modules.get("atheris")
    if atheris is not None and hasattr(atheris, "Mutate"):
        try:
            return bytes(atheris.Mutate(data, max_size))[:max_size]
        except Exception:                                      # noqa: BLE001 - never raise
            pass
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(4)
        if how == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif how == 1 and out:
            at = rng.randrange(len(out))
            out[at:at + 1] = bytes([rng.choice((0, 1, 0x7F, 0x80, 0xFF))])
        elif how == 2:
            at = rng.randint(0, len(out))
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif out:
            at = rng.randrange(len(out))
            del out[at:at + rng.randint(1, 8)]
    return bytes(out[:max_size])


# -- compact images --------------------------------------------------------------------------------

SB_SIZE, HDR, ESZ = L.SUPERBLOCK.size, L.HEADER_SIZE, L.ENTRY_SIZE


class Log:
    """A compact image as editable parts: superblock, log header, whole entries, a partial tail.

    `encode()` gives the compact bytes back (byte-exact for an unedited image). Fields are set by
    struct and field name (`set("add_daxdev", "index", 3, entry=k)`), never by offset."""

    __slots__ = ("sb", "header", "entries", "tail", "moved")

    def __init__(self, sb: bytearray, header: bytearray, entries: list[bytearray], tail: bytes):
        self.sb, self.header, self.entries, self.tail = sb, header, entries, tail
        self.moved = False

    @classmethod
    def decode(cls, data: bytes) -> "Log | None":
        if len(data) < SB_SIZE + HDR:
            return None
        body = data[SB_SIZE + HDR:]
        n = len(body) // ESZ
        return cls(bytearray(data[:SB_SIZE]), bytearray(data[SB_SIZE:SB_SIZE + HDR]),
                   [bytearray(body[ESZ * i: ESZ * (i + 1)]) for i in range(n)], bytes(body[ESZ * n:]))

    def encode(self, max_size: int = 1 << 62) -> bytes:
        room = max(0, (max_size - SB_SIZE - HDR) // ESZ)
        out = bytes(self.sb) + bytes(self.header) + b"".join(bytes(e) for e in self.entries[:room])
        return out if len(self.entries) > room else out + self.tail

    # fields
    def get(self, where: str, name: str, entry: int = 0) -> int | bytes:
        buf = self._buf(where, entry)
        at, size = L.field_span(where, name)
        raw = bytes(buf[at:at + size])
        return raw if L.STRUCTS[where].code(name).endswith("s") else int.from_bytes(raw, "little")

    def set(self, where: str, name: str, value: int | bytes, entry: int = 0) -> None:
        buf = self._buf(where, entry)
        at, size = L.field_span(where, name)
        raw = value if isinstance(value, bytes) else (int(value) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        buf[at:at + size] = raw[:size].ljust(size, b"\0")

    def _buf(self, where: str, entry: int) -> bytearray:
        return self.sb if where == "superblock" else self.header if where == "log_header" else self.entries[entry]

    # what the image holds
    def etype(self, k: int) -> int:
        return _U32.unpack_from(self.entries[k], 8)[0]

    def of_type(self, t: int) -> list[int]:
        return [k for k in range(len(self.entries)) if self.etype(k) == t]

    def file_struct(self, k: int) -> str:
        return "interleave_meta" if self.get("file_meta", "ext_type", k) == L.ExtType.INTERLEAVE else "file_meta"

    def ndev(self) -> int:
        """Daxdevs the log defines if every ADD_DAXDEV applies: 1 + their number."""
        return 1 + len(self.of_type(ADD))

    def paths(self) -> list[bytes]:
        out = []
        for k in self.of_type(FILE) + self.of_type(MKDIR):
            where = "file_meta" if self.etype(k) == FILE else "mkdir"
            out.append(bytes(self.get(where, "relpath", k)).split(b"\0")[0])
        return out

    @property
    def alloc_unit(self) -> int:
        au = int(self.get("superblock", "alloc_unit"))
        return au if au in L.ALLOC_UNITS_ACCEPTED else AU

    def reseal(self) -> None:
        """Counters = the entries held; seqnums renumbered if entries moved; every CRC recomputed."""
        n = len(self.entries)
        for k, e in enumerate(self.entries):
            if self.moved:
                _U64.pack_into(e, 0, k)
            L.LOG_ENTRY.seal(e)
        self.set("log_header", "next_seqnum", n)
        self.set("log_header", "next_index", n)
        L.LOG_HEADER.seal(self.header)
        L.SUPERBLOCK.seal(self.sb)


def new_entry(etype: int) -> bytearray:
    e = bytearray(ESZ)
    _U32.pack_into(e, 8, etype)
    return e


def mkdir_entry(path: bytes, mode: int = 0o755) -> bytearray:
    e = new_entry(MKDIR)
    struct.pack_into("<III80s", e, L.PAYLOAD, 0, 0, mode, path[:80])
    return e


def add_entry(index: int, uuid: bytes, size: int = 16 << 20) -> bytearray:
    e = new_entry(ADD)
    L.ADD_DAXDEV.codec.pack_into(e, L.PAYLOAD, size, uuid, index)
    return e


def file_entry(path: bytes, size: int, extents: list[tuple[int, int, int]], *, strips: int = 0,
               chunk: int = AU) -> bytearray:
    """A FILE entry: simple extents, or (strips > 0) one interleaved extent of those strips."""
    e = new_entry(FILE)
    L.FILE_HEAD.pack_into(e, L.PAYLOAD, size, 2, 0, 0, 0o644, path[:80],
                          L.ExtType.INTERLEAVE if strips else L.ExtType.SIMPLE, 1 if strips else len(extents))
    at = L.FMAP_WORDS
    if strips:
        struct.pack_into("<QQ", e, at, strips, chunk)
        at += 16
    for k, (d, off, ln) in enumerate(extents[:16]):
        struct.pack_into("<QQQ", e, at + 24 * k, d, off, ln)
    return e


def _uuid(rng: random.Random) -> bytes:
    return bytes([0xF0 | rng.randrange(16)]) + rng.randbytes(15)


# Image operators: (log, rng) -> a short description of what was done, or None if it does not apply.
ImageOp = Callable[[Log, random.Random], "str | None"]

NUMERIC = {
    "file_meta": ("size", "flags", "uid", "gid", "mode", "ext_type", "nextents",
                  *(f"se{i}_{f}" for i in (0, 1, 15) for f in ("devindex", "offset", "len"))),
    "interleave_meta": ("size", "niext", "nstrips", "chunk_size",
                        *(f"st{i}_{f}" for i in (0, 1, 15) for f in ("devindex", "offset", "len"))),
    "mkdir": ("uid", "gid", "mode"),
    "add_daxdev": ("size", "index"),
    "log_entry": ("seqnum", "type"),
}


def field_values(log: Log, where: str, name: str) -> tuple[int, ...]:
    """Boundary values for a field: the wide ones plus those of its own limit."""
    au, n = log.alloc_unit, log.ndev()
    if name in ("nextents", "nstrips"):
        return WIDE + around(16) + (2,)
    if name == "niext":
        return WIDE + (2,)
    if name.endswith("devindex") or name == "index":
        return WIDE + around(n - 1) + around(n) + around(TABLE_LIMITS[0]) + around(TABLE_LIMITS[1])
    if name.endswith("offset") or name.endswith("len") or name == "chunk_size":
        return WIDE + (au, au - 1, au + 1, 2 * au, 4096, 2 * AU + 4096, (int(log.get("superblock", "dd_size"))))
    if name == "size":
        return WIDE + (au - 1, au, au + 1, 3 * au + 4096, 16 * au, 16 * au + 1, 15 * au + 1)
    if name == "type":
        return (0, 1, 2, 3, 4, 5, U32)
    if name == "mode":
        return (0, 0o7777, 0o170000 | 0o644, U32)
    return WIDE


def op_field_boundary(log: Log, rng: random.Random) -> str | None:
    """One numeric field of one entry set to a boundary value of that field."""
    if not log.entries:
        return None
    k = rng.randrange(len(log.entries))
    t = log.etype(k)
    where = log.file_struct(k) if t == FILE else {MKDIR: "mkdir", ADD: "add_daxdev"}.get(t, "log_entry")
    if rng.random() < 0.1:
        where = "log_entry"
    name = rng.choice(NUMERIC[where])
    value = rng.choice(field_values(log, where, name))
    log.set(where, name, value, k)
    if name == "seqnum":
        log.moved = False
    return f"{where}.{name}[{k}] = {value:#x}"


SB_VALUES: dict[str, tuple[int, ...]] = {
    "version": (0, 47, 48, 49, U64), "log_offset": (0, 199, 200, 4096, AU - 1, AU, AU + 1, U64),
    "log_len": (0, HDR + ESZ - 1, HDR + ESZ, HDR + 2 * ESZ, 64 << 10, 8 << 20, U64),
    "alloc_unit": (0, 1, 4095, 4096, 4097, AU - 1, AU, AU + 1, 2 * AU, U64),
    "omf_major": (0, 1, 2, 3, U32), "omf_minor": (0, 1, 2, 3, U32), "flags": (0, 1, 2, 3, U32),
    "dd_size": (0, AU, 2 * AU, 4 * AU, 16 << 20, 32 << 20, U32, U32 + 1, U64),
    "magic": (0, L.SUPER_MAGIC, L.SUPER_MAGIC + 1, L.LOG_MAGIC),
}
HEADER_VALUES: dict[str, tuple[int, ...]] = {
    "magic": (0, L.LOG_MAGIC, L.LOG_MAGIC + 1), "len": (0, 64 << 10, (64 << 10) + 1, 8 << 20, U64),
    "last_index": (0, 1, 119, 120, 121, 15419, 15420, U64),
    "next_seqnum": (0, 1, 119, 120, 121, U32, U64), "next_index": (0, 1, 119, 120, 121, U32, U64),
}


def op_header_boundary(log: Log, rng: random.Random) -> str | None:
    """A superblock or log-header field set to a boundary value (the counters are then kept as
    set: the reseal recomputes only the CRCs)."""
    if rng.random() < 0.5:
        name = rng.choice(list(SB_VALUES))
        value = rng.choice(SB_VALUES[name])
        log.set("superblock", name, value)
        return f"superblock.{name} = {value:#x}"
    name = rng.choice(list(HEADER_VALUES))
    n = len(log.entries)
    value = rng.choice(HEADER_VALUES[name] + around(n))
    log.set("log_header", name, value)
    return f"!counters log_header.{name} = {value:#x}"


def op_swap_entries(log: Log, rng: random.Random) -> str | None:
    if len(log.entries) < 2:
        return None
    i, j = rng.sample(range(len(log.entries)), 2)
    log.entries[i], log.entries[j] = log.entries[j], log.entries[i]
    log.moved = True
    return f"swapped entries {i} and {j}"


def op_duplicate_entry(log: Log, rng: random.Random) -> str | None:
    if not log.entries:
        return None
    i = rng.randrange(len(log.entries))
    j = rng.randint(0, len(log.entries))
    log.entries.insert(j, bytearray(log.entries[i]))
    log.moved = True
    return f"copied entry {i} to {j}"


def op_delete_entry(log: Log, rng: random.Random) -> str | None:
    if not log.entries:
        return None
    i = rng.randrange(len(log.entries))
    del log.entries[i]
    log.moved = True
    return f"deleted entry {i}"


def op_move_entry(log: Log, rng: random.Random) -> str | None:
    if len(log.entries) < 2:
        return None
    i, j = rng.sample(range(len(log.entries)), 2)
    log.entries.insert(j, log.entries.pop(i))
    log.moved = True
    return f"moved entry {i} to {j}"


def near_miss_names(existing: list[bytes], rng: random.Random) -> list[bytes]:
    """Path shapes just beside the valid ones (each tests one rule of the path check)."""
    base = rng.choice(existing) if existing else b"a"
    first = base.split(b"/")[0] or b"a"
    return [b"..", b".", b"a/../b", base + b"/..", base + b"/.", b"./" + base, base + b"/",
            base + b"//x", b"/" + base, b"x" * 79, b"y" * 80, (base + b"/" + b"z" * 80)[:79],
            (base + b"/" + b"z" * 80)[:80], b".meta", b".meta/x", b".metax", b"x/.meta", b"..a",
            b"a..", b"...", base, first + b"/new", base + b"/child", b"\xff\xfe", b"a\x00b", b""]


def op_near_miss_name(log: Log, rng: random.Random) -> str | None:
    """A FILE or MKDIR entry's relpath replaced by a near-miss of a path the log already has."""
    ks = log.of_type(FILE) + log.of_type(MKDIR)
    if not ks:
        return None
    k = rng.choice(ks)
    name = rng.choice(near_miss_names(log.paths(), rng))
    log.set("file_meta" if log.etype(k) == FILE else "mkdir", "relpath", name, k)
    return f"relpath[{k}] = {name!r}"


def op_insert_entry(log: Log, rng: random.Random) -> str | None:
    """A fresh entry inserted anywhere: a MKDIR with a near-miss name, the next ADD_DAXDEV, or a
    file of 1..16 extents on a defined index."""
    j = rng.randint(0, len(log.entries))
    kind = rng.randrange(3)
    if kind == 0:
        e = mkdir_entry(rng.choice(near_miss_names(log.paths(), rng) + [b"d%d" % rng.randrange(100)]))
    elif kind == 1:
        e = add_entry(rng.choice((log.ndev(),) * 3 + around(log.ndev())), _uuid(rng))
    else:
        n = rng.choice((1, 2, 15, 16, 17))
        au = log.alloc_unit
        dev = rng.randrange(log.ndev())
        start = 8 * AU + rng.randrange(8) * au
        exts = [(dev, start + k * au, au) for k in range(n)]
        e = file_entry(b"f%d" % rng.randrange(1000), rng.choice((n * au, n * au - 1, 1)), exts)
        if n > 16:
            L.FILE_HEAD.pack_into(e, L.PAYLOAD, *L.FILE_HEAD.unpack_from(e, L.PAYLOAD)[:7], n)
    log.entries.insert(j, e)
    log.moved = True
    return f"inserted a type-{log.etype(j)} entry at {j}"


def _extent_fields(log: Log, k: int) -> tuple[str, str, int]:
    where = log.file_struct(k)
    prefix = "st" if where == "interleave_meta" else "se"
    count = int(log.get(where, "nstrips" if prefix == "st" else "nextents", k))
    return where, prefix, max(1, min(count, 16))


def op_retarget_devindex(log: Log, rng: random.Random) -> str | None:
    """One extent or strip moved to another daxdev index (a defined one, the next one, 0)."""
    ks = log.of_type(FILE)
    if not ks:
        return None
    k = rng.choice(ks)
    where, prefix, n = _extent_fields(log, k)
    s = rng.randrange(n)
    value = rng.choice(tuple(range(log.ndev())) + around(log.ndev()) + (TABLE_LIMITS[0] - 1, TABLE_LIMITS[0]))
    log.set(where, f"{prefix}{s}_devindex", value, k)
    return f"{where}.{prefix}{s}_devindex[{k}] = {value}"


def op_add_index(log: Log, rng: random.Random) -> str | None:
    """An ADD_DAXDEV's index set to 0, a neighbour, another entry's index, or the table limits."""
    ks = log.of_type(ADD)
    if not ks:
        return None
    k = rng.choice(ks)
    cur = int(log.get("add_daxdev", "index", k))
    other = int(log.get("add_daxdev", "index", rng.choice(ks)))
    value = rng.choice((0, cur - 1, cur + 1, other) + around(TABLE_LIMITS[0]) + around(TABLE_LIMITS[1]))
    log.set("add_daxdev", "index", value, k)
    return f"add_daxdev.index[{k}] = {value}"


def op_add_uuid(log: Log, rng: random.Random) -> str | None:
    """An ADD_DAXDEV's UUID set to the primary's, another ADD_DAXDEV's, nil, or a fresh one."""
    ks = log.of_type(ADD)
    if not ks:
        return None
    k = rng.choice(ks)
    value = rng.choice([bytes(log.get("superblock", "dev_uuid")), bytes(log.get("add_daxdev", "uuid", rng.choice(ks))),
                        bytes(16), _uuid(rng)])
    log.set("add_daxdev", "uuid", value, k)
    return f"add_daxdev.uuid[{k}] = {value.hex()}"


def op_device_size(log: Log, rng: random.Random) -> str | None:
    """A device's size (an ADD_DAXDEV's, or the primary's dd_size) set around its last extent."""
    ks = log.of_type(ADD)
    value = rng.choice((0, AU, 2 * AU, 3 * AU, 4 * AU, 8 * AU, 16 << 20, U64, U32 + 1))
    if ks and rng.random() < 0.7:
        k = rng.choice(ks)
        log.set("add_daxdev", "size", value, k)
        return f"add_daxdev.size[{k}] = {value:#x}"
    log.set("superblock", "dd_size", value)
    return f"superblock.dd_size = {value:#x}"


def op_size_not_chunk_multiple(log: Log, rng: random.Random) -> str | None:
    """A file's size (or one strip's / extent's length) set just off a chunk multiple."""
    ks = log.of_type(FILE)
    if not ks:
        return None
    k = rng.choice(ks)
    where, prefix, n = _extent_fields(log, k)
    au = log.alloc_unit
    chunk = int(log.get(where, "chunk_size", k)) if where == "interleave_meta" else au
    chunk = chunk if 0 < chunk < (1 << 40) else au
    if rng.random() < 0.6:
        total = sum(int(log.get(where, f"{prefix}{s}_len", k)) for s in range(n))
        base = rng.choice((total, total - chunk, chunk, chunk * n, chunk * (n - 1), 0))
        value = max(0, base + rng.choice((1, -1, 4095, 4096, 4097, chunk // 2, -(chunk // 2))))
        log.set(where, "size", value, k)
        return f"{where}.size[{k}] = {value:#x}"
    s = rng.randrange(n)
    cur = int(log.get(where, f"{prefix}{s}_len", k))
    value = max(0, cur + rng.choice((-4096, 4096, -au, au, chunk // 2, 1, -1)))
    log.set(where, f"{prefix}{s}_len", value, k)
    return f"{where}.{prefix}{s}_len[{k}] = {value:#x}"


def op_full_table(log: Log, rng: random.Random) -> str | None:
    """ADD_DAXDEV entries appended (or inserted after the last one) until the table holds limit-1,
    limit or limit+1 devices (the kernel's 24 slots or replay's 64), each a fresh UUID; maybe a file on the last."""
    limit = rng.choice(TABLE_LIMITS)
    want = rng.choice(around(limit))
    have = log.ndev()
    adds = log.of_type(ADD)
    at = rng.choice((len(log.entries), rng.randint(adds[-1] + 1 if adds else 0, len(log.entries))))
    new = [add_entry(have + k, _uuid(rng), rng.choice((16 << 20, 8 << 20))) for k in range(max(0, want - have))]
    if not new:
        return None
    if rng.random() < 0.5:
        new.append(file_entry(b"last%d" % rng.randrange(100), AU, [(want - 1, 4 * AU, AU)]))
    log.entries[at:at] = new
    log.moved = True
    return f"table filled to {want} devices at entry {at}"


def op_many_extents(log: Log, rng: random.Random) -> str | None:
    """A file's fmap rewritten with 15, 16 or 17 extents (simple) or strips (interleaved), laid
    end to end from its first extent, spread over the defined indices or all on one."""
    ks = log.of_type(FILE)
    if not ks:
        return None
    k = rng.choice(ks)
    where, prefix, _ = _extent_fields(log, k)
    n = rng.choice((15, 16, 16, 17))
    au = log.alloc_unit
    d0, off0 = int(log.get(where, f"{prefix}0_devindex", k)), int(log.get(where, f"{prefix}0_offset", k))
    spread = rng.random() < 0.5
    ndev = log.ndev()
    for s in range(min(n, 16)):
        log.set(where, f"{prefix}{s}_devindex", (s % ndev) if spread else d0, k)
        log.set(where, f"{prefix}{s}_offset", off0 + (0 if spread else s * au), k)
        log.set(where, f"{prefix}{s}_len", au, k)
    log.set(where, "nstrips" if prefix == "st" else "nextents", n, k)
    if rng.random() < 0.7:
        chunk = int(log.get(where, "chunk_size", k)) if prefix == "st" else au
        log.set(where, "size", min(n, 16) * (au if prefix == "se" else min(chunk, au)) - rng.choice((0, 0, 1)), k)
    return f"{where}[{k}] has {n} {'strips' if prefix == 'st' else 'extents'}"


def op_conflicting_entry(log: Log, rng: random.Random) -> str | None:
    """A new entry that conflicts with one the log has (the op a builder would skip): the same
    path again (as a dir or a file), a child of a file, or a file on another file's extents."""
    ks = log.of_type(FILE) + log.of_type(MKDIR)
    if not ks:
        return None
    k = rng.choice(ks)
    where = "file_meta" if log.etype(k) == FILE else "mkdir"
    path = bytes(log.get(where, "relpath", k)).split(b"\0")[0]
    how = rng.randrange(4)
    if how == 0:
        e = mkdir_entry(path)
    elif how == 1 and log.etype(k) == FILE:
        e = mkdir_entry(path + b"/x") if rng.random() < 0.5 else file_entry(path + b"/x", 4096, [(0, 8 * AU, AU)])
    elif log.etype(k) == FILE:                     # same extents, another name (fsck: collision)
        e = bytearray(log.entries[k])
        e[L.PAYLOAD + 24:L.PAYLOAD + 104] = (path + b"2")[:79].ljust(80, b"\0")
    else:
        e = file_entry(path, 4096, [(0, 8 * AU, AU)])
    j = rng.randint(k + 1, len(log.entries))
    log.entries.insert(j, e)
    log.moved = True
    return f"entry {j} conflicts with entry {k} ({path!r})"


def op_overlapping_file(log: Log, rng: random.Random) -> str | None:
    """A new file on part of another file's allocation, in one of fsck's overlap shapes: a
    sub-range inside one of its extents, a range over one end of it, a few allocation units of
    it as separate extents, or one long extent from its start over the allocations after it
    (identical extents are `op_conflicting_entry`'s). An image operator only: not among
    `gen.corrupt`'s, whose draw a structured seed's corruption seed indexes (a new operator
    there changes what every seed does)."""
    ks = [k for k in log.of_type(FILE) if log.file_struct(k) == "file_meta"]
    if not ks:
        return None
    k = rng.choice(ks)
    _, _, n = _extent_fields(log, k)
    s = rng.randrange(n)
    d, off, ln = (int(log.get("file_meta", f"se{s}_{f}", k)) for f in ("devindex", "offset", "len"))
    au = log.alloc_unit
    units = max(1, ln // au)
    shape = rng.randrange(4)
    if shape == 3:
        exts = [(d, off, ln + rng.randint(1, 3) * au)]
    elif shape == 0:
        a = rng.randrange(units)
        exts = [(d, off + a * au, (rng.randint(a + 1, units) - a) * au)]
    elif shape == 1:
        exts = [(d, off + ln - au, 2 * au)] if rng.random() < 0.5 else [(d, max(0, off - au), 2 * au)]
    else:
        exts = [(d, off + u * au, au) for u in sorted(rng.sample(range(units), min(units, rng.randint(2, 4))))]
    j = rng.randint(k + 1, len(log.entries))
    log.entries.insert(j, file_entry(b"ov%d" % rng.randrange(1000), sum(x[2] for x in exts), exts))
    log.moved = True
    return f"entry {j} lies over entry {k}'s extent {s} ({len(exts)} extents, shape {shape})"


def op_payload_bytes(log: Log, rng: random.Random) -> str | None:
    """libFuzzer's (or our) byte mutation inside one entry's payload only; the reseal then makes
    the edit reach replay's checks instead of LOG-PREFIX."""
    if not log.entries:
        return None
    k = rng.randrange(len(log.entries))
    e = log.entries[k]
    lo = L.PAYLOAD
    hi = {ADD: L.PAYLOAD + L.ADD_DAXDEV.size, MKDIR: L.PAYLOAD + L.MKDIR.size}.get(log.etype(k), L.ENTRY_CRC_AT)
    if rng.random() < 0.5 and log.etype(k) == FILE:        # the head or the first extents, where the checks look
        hi = L.FMAP_WORDS + 24 * 3
    new = byte_mutate(bytes(e[lo:hi]), hi - lo, rng)
    e[lo:hi] = new.ljust(hi - lo, b"\0")[:hi - lo]
    return f"payload bytes of entry {k}"


IMAGE_OPERATORS: dict[str, ImageOp] = {
    "field_boundary": op_field_boundary, "header_boundary": op_header_boundary,
    "swap_entries": op_swap_entries, "duplicate_entry": op_duplicate_entry,
    "delete_entry": op_delete_entry, "move_entry": op_move_entry, "insert_entry": op_insert_entry,
    "near_miss_name": op_near_miss_name, "retarget_devindex": op_retarget_devindex,
    "add_index": op_add_index, "add_uuid": op_add_uuid, "device_size": op_device_size,
    "size_not_chunk_multiple": op_size_not_chunk_multiple, "full_table": op_full_table,
    "many_extents": op_many_extents, "payload_bytes": op_payload_bytes,
    "conflicting_entry": op_conflicting_entry, "overlapping_file": op_overlapping_file,
}
# Draw weights: entry-level edits dominate; header edits mostly end at a header check.
_WEIGHTS = {"header_boundary": 1, "payload_bytes": 4, "field_boundary": 4}
_NAMES = list(IMAGE_OPERATORS)
_CUM = [_WEIGHTS.get(n, 2) for n in _NAMES]


def stack_depth(rng: random.Random) -> int:
    """1 (half the time), 2, 3 or 4 operators on one input."""
    r = rng.random()
    return 1 if r < 0.5 else 2 if r < 0.8 else 3 if r < 0.93 else 4


def mutate_log(log: Log, rng: random.Random, depth: int | None = None) -> list[str]:
    """Apply 1..4 image operators to `log` (each retried on another if it does not apply), then
    reseal (nine inputs in ten). Returns the descriptions of what was done."""
    done: list[str] = []
    for _ in range(stack_depth(rng) if depth is None else depth):
        for _ in range(4):
            name = rng.choices(_NAMES, _CUM)[0]
            what = IMAGE_OPERATORS[name](log, rng)
            if what is not None:
                done.append(f"{name}: {what}")
                break
    if rng.random() < 0.9:
        keep = dict(next_index=log.get("log_header", "next_index"), next_seqnum=log.get("log_header", "next_seqnum"))
        log.reseal()
        if any(d.split(": ", 1)[1].startswith("!counters") for d in done):
            for f, v in keep.items():
                log.set("log_header", f, v)
            L.LOG_HEADER.seal(log.header)
    else:
        done.append("stale")
    return done


def log_image(data: bytes, max_size: int, seed: int) -> bytes:
    """Custom mutator of compact images (`log_replay`): decode, 1..4 named operators, reseal,
    re-encode; byte mutation one time in ten, or when the bytes hold no log header."""
    rng = random.Random(seed)
    try:
        log = Log.decode(data)
        if log is None or rng.random() < 0.1:
            return byte_mutate(data, max_size, rng)
        mutate_log(log, rng)
        return log.encode(max_size)[:max_size]     # never past max_size: Atheris refuses it (RuntimeError)
    except Exception:                                          # noqa: BLE001 - never raise
        return byte_mutate(data, max_size, rng)


# -- region overlays (superblock, log_header targets) --------------------------------------------


def region(name: str) -> Mutator:
    """Custom mutator for an overlay target over `name` ("superblock" or "log_header"): byte 0 is
    the reseal bit (flipped one time in eight), the rest the struct; one or two named fields set
    to boundary values. Fields the input does not reach are first filled in from the base image."""
    desc = L.STRUCTS[name]
    values = SB_VALUES if name == "superblock" else HEADER_VALUES

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        try:
            if rng.random() < 0.15:
                return byte_mutate(data, max_size, rng)
            from harness.gen.region import base_image
            base = base_image().device
            at = 0 if name == "superblock" else L.Superblock.decode(base).log_offset
            body = bytearray(base[at:at + desc.size])
            given = data[1:1 + desc.size]
            body[:len(given)] = given
            flag = data[0] if data else 1
            if rng.random() < 0.125:
                flag ^= 1
            for _ in range(rng.choice((1, 1, 2))):
                fname = rng.choice(list(values) + ["dev_uuid", "fs_uuid"] * (name == "superblock"))
                off, size = L.field_span(name, fname)
                if fname.endswith("uuid"):
                    v = rng.choice([bytes(16), rng.randbytes(16), bytes(body[L.field_span(name, "fs_uuid")[0]:][:16])])
                    body[off:off + 16] = v
                    continue
                value = rng.choice(values[fname]) & ((1 << (8 * size)) - 1)
                body[off:off + size] = value.to_bytes(size, "little")
            return (bytes([flag]) + bytes(body))[:max_size]
        except Exception:                                      # noqa: BLE001 - never raise
            return byte_mutate(data, max_size, rng)
    return mutate


# -- choice streams (structured targets) ---------------------------------------------------------


def _draws(data: bytes, decode_kw: dict) -> "list | None":
    from harness.gen import decode
    c = decode.Choices(data, record=True)
    decode.spec(c, **decode_kw)
    return c.trace


def choice_stream(**decode_kw: object) -> Mutator:
    """Custom mutator for targets whose input starts with `gen.decode.spec(Choices(data), **kw)`:
    decode with a recording choice stream, then edit draws (boundary values of their range, the
    decoder's extended values with their extra bytes inserted), whole operations (duplicate,
    drop, swap, with the op count kept right) or the bytes after the spec."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        try:
            trace = _draws(data, decode_kw)
            if not trace or rng.random() < 0.1:
                return byte_mutate(data, max_size, rng)
            out = bytes(data)
            for _ in range(stack_depth(rng)):
                trace = _draws(out, decode_kw) or trace
                out = _choice_op(out, trace, rng)
            return out[:max_size]
        except Exception:                                      # noqa: BLE001 - never raise
            return byte_mutate(data, max_size, rng)
    return mutate


def _spans(trace: list) -> Iterator[tuple[int, int]]:
    """Byte spans [start, end) of each operation in a recorded trace."""
    starts = [d.start for d in trace if d.label == "op"]
    end = max((d.start + d.nbytes for d in trace), default=0)
    for k, s in enumerate(starts):
        yield s, starts[k + 1] if k + 1 < len(starts) else end


def _choice_op(data: bytes, trace: list, rng: random.Random) -> bytes:
    padded = data.ljust(max((d.start + d.nbytes for d in trace), default=0), b"\0")
    draws = [d for d in trace if d.nbytes]
    r = rng.random()
    spans = list(_spans(trace))
    nops = next((d for d in trace if d.label == "nops"), None)
    ndev = next((d for d in draws if d.label == "ndev" and d.escape), None)
    if r < 0.1 and ndev is not None:                          # a full daxdev table (24 or 23 devices)
        many = next((d for d in draws if d.label == "ndev.many"), None)
        pick = bytes([2 if rng.random() < 0.67 else 1])
        head = padded[:ndev.start] + bytes([255])             # the second group of MANY_DEVICES
        if many is not None:
            return head + pick + padded[many.start + many.nbytes:]
        return head + pick + padded[ndev.start + 1:]
    if r < 0.45 and draws:                                     # one draw to a boundary / extended value
        d = rng.choices(draws, [4 if x.escape else 1 for x in draws])[0]   # escapable draws: 4x
        span = d.hi - d.lo
        raws = [0, span, max(0, span - 1), 1, rng.randint(0, span)]
        if d.escape:                                          # the decoder's extended values
            raws += [256 - d.escape + rng.randrange(d.escape)] * 3
        raw = rng.choice(raws)
        new = (raw % (1 << (8 * d.nbytes))).to_bytes(d.nbytes, "little")
        extra = b""
        if d.escape and raw >= 256 - d.escape:
            extra = bytes(rng.choice((0, 0xFF, rng.randrange(256))) for _ in range(d.extra))
        return padded[:d.start] + new + extra + padded[d.start + d.nbytes:]
    if r < 0.75 and spans and nops is not None:               # whole operations
        how = rng.randrange(3)
        count = len(spans)
        if how == 0 and count < nops.hi:                       # duplicate one op (count + 1)
            s, e = rng.choice(spans)
            to = rng.choice(spans)[0]
            body = padded[:to] + padded[s:e] + padded[to:]
            return _set_draw(body, nops, count + 1)
        if how == 1 and count > 0:                             # drop one op (count - 1)
            s, e = rng.choice(spans)
            return _set_draw(padded[:s] + padded[e:], nops, count - 1)
        if count >= 2:                                         # swap two ops
            (s1, e1), (s2, e2) = sorted(rng.sample(spans, 2))
            return padded[:s1] + padded[s2:e2] + padded[e1:s2] + padded[s1:e1] + padded[e2:]
    end = max((d.start + d.nbytes for d in trace), default=0)  # the tail: corruption seed and mode
    tail = bytearray(padded[end:].ljust(16, b"\0"))
    at = rng.randrange(len(tail))
    tail[at] = rng.choice((0, 1, 2, 3, 0xFF, rng.randrange(256)))
    return padded[:end] + bytes(tail)


def _set_draw(data: bytes, d, value: int) -> bytes:
    raw = (value - d.lo).to_bytes(d.nbytes, "little")
    return data[:d.start] + raw + data[d.start + d.nbytes:]


# -- GET_FMAP replies (fmap_wire) ------------------------------------------------------------------

MAX_WIRE = 32                                    # the kernel's max_extents / max_strips


def fmap_reply(data: bytes, max_size: int, seed: int) -> bytes:
    """Custom mutator of `fmap_wire` inputs (byte 0 picks the ABI generation, the rest is one
    GET_FMAP reply): decode the reply with `famfs.wire`, then set a count to a boundary (0, 1, 15,
    16, 17, 31, 32, 33 extents or strips, by repeating them end to end), a devindex to a table
    boundary (the defined 0-2, 3, the power-of-two edges 15-17 and 31-32, 23, 24, 63, 64, 2^32-1),
    an offset, length or chunk just off the alignment, the file size around what the extents
    cover, switch simple <-> interleaved or the ABI byte, or make the header's count disagree with
    the body; re-encode. Byte mutation when the reply does not decode (and one time in ten)."""
    rng = random.Random(seed)
    try:
        from harness.famfs import wire
        gens = list(wire.ABIS.values())
        if len(data) < 2 or rng.random() < 0.1:
            return byte_mutate(data, max_size, rng)
        abi_byte = data[0]
        gen = gens[abi_byte % len(gens)]
        try:
            msg = wire.decode_fmap(bytes(data[1:]), gen)
        except wire.WireError:
            return byte_mutate(data, max_size, rng)
        patch = None
        for _ in range(stack_depth(rng)):
            msg, abi_byte, patch = _reply_op(msg, abi_byte, rng, wire)
        out = wire.encode_fmap(msg, gens[abi_byte % len(gens)])
        if patch is not None:                                  # the header's count, not the body's
            out = out[:8] + _U32.pack(patch) + out[12:]
        return (bytes([abi_byte]) + out)[:max_size]
    except Exception:                                          # noqa: BLE001 - never raise
        return byte_mutate(data, max_size, rng)


def _reply_op(msg, abi_byte: int, rng: random.Random, wire):
    from dataclasses import replace
    counts = (0, 1, 2, 15, 16, 17, 31, 32, 33)
    devs = (0, 1, 2, 3, 15, 16, 17, 23, 24, 31, 32, 63, 64, U32)     # defined ones, power-of-two edges, tables' ends
    offs = (0, 4096, AU - 4096, AU, AU + 4096, 2 * AU, 4 * AU, U64 - AU)
    simple = msg.ext_type == wire.EXT_SIMPLE
    exts = list(msg.extents) if simple else list(msg.interleaved[0].strips) if msg.interleaved else []
    base = exts[0] if exts else wire.WireSimple(0, 2 * AU, AU)
    how = rng.randrange(8)
    patch = None
    if how == 0:                                               # a count at a boundary
        n = rng.choice(counts)
        exts = [wire.WireSimple(base.devindex if rng.random() < 0.5 else k % 3, base.offset + k * max(base.len, AU),
                                max(base.len, AU)) for k in range(n)]
    elif how == 1 and exts:                                    # one devindex at a table boundary
        k = rng.randrange(len(exts))
        exts[k] = replace(exts[k], devindex=rng.choice(devs))
    elif how == 2 and exts:                                    # an offset / length off the alignment
        k = rng.randrange(len(exts))
        field = rng.choice(("offset", "len"))
        exts[k] = replace(exts[k], **{field: max(0, rng.choice(offs) + rng.choice((0, 0, 1, -1, 4096)))})
    elif how == 3:                                             # the file size around the coverage
        total = sum(e.len for e in exts)
        size = max(0, rng.choice((0, 1, total, total - 1, total + 1, total - 4096, U64)))
        msg = replace(msg, file_size=size)
    elif how == 4:                                             # simple <-> interleaved
        simple = not simple
    elif how == 5:
        abi_byte = rng.randrange(256) if rng.random() < 0.3 else (abi_byte + 1) % 4
    elif how == 6:
        patch = rng.choice(counts + (len(exts) + 1, max(0, len(exts) - 1)))
    if simple:
        return replace(msg, ext_type=wire.EXT_SIMPLE, extents=tuple(exts), interleaved=()), abi_byte, patch
    old = msg.interleaved[0] if msg.interleaved else None
    chunk = old.chunk_size if old else AU
    nbytes = old.nbytes if old else msg.file_size
    if how == 7:
        chunk = rng.choice((0, 4096, AU - 4096, AU, 2 * AU, 4 * AU, U32))
        nbytes = rng.choice((0, msg.file_size, msg.file_size + 1, chunk * max(1, len(exts))))
    nstrips = len(exts) if rng.random() < 0.9 else rng.choice(counts)
    ie = wire.WireInterleave(nstrips, chunk, nbytes, tuple(exts))
    return replace(msg, ext_type=wire.EXT_INTERLEAVE, interleaved=(ie,), extents=()), abi_byte, patch
