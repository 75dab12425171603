"""Corruption operators: edit a built image on purpose, each tagged with its mode.

Modes (every finding carries the mode of the operator that produced its input):

* ``fix-all``    edit named fields, then recompute every CRC, so the corruption reaches replay logic;
* ``raw``        flip bytes and leave CRCs as they are (most such images end at LOG-PREFIX or SB-VALID);
* ``transplant`` copy, reorder, duplicate or drop whole valid entries, renumber seqnums and
                 reseal: the natural source of out-of-order ADD_DAXDEV and use-before-define;
* ``checks-off`` like raw, but replayed with entry CRC checks disabled (triaged apart).

Besides the ADD_DAXDEV families, `gen.mutate`'s entry operators run here on built images
(`conflicting_entry`, `near_miss_name`, `many_extents`, `full_table`, `size_not_chunk_multiple`,
`retarget_devindex`): the shapes a builder never writes (a conflicting op, 16 extents, a full
table, a strip off the chunk) reach the structured targets as fix-all corruptions.

Operators name fields (`("add_daxdev", "index")`), never offsets; `layout.field_span` turns a name
into bytes. An operator never raises: one that does not apply to an image returns None.
"""
from __future__ import annotations

import enum
import random
import struct
from dataclasses import dataclass
from typing import Callable

from harness.famfs import layout as L



class Mode(enum.StrEnum):
    """A corruption's mode (the module docstring says what each does); crash records carry the value."""

    FIX_ALL = "fix-all"
    RAW = "raw"
    TRANSPLANT = "transplant"
    CHECKS_OFF = "checks-off"


@dataclass(frozen=True, slots=True)
class Corruption:
    """What an operator did: its name, mode, and a short human description."""

    op: str
    mode: Mode
    detail: str = ""

    @property
    def check_crc(self) -> bool:
        return self.mode != Mode.CHECKS_OFF


def _log(device: bytearray) -> tuple[int, int, int]:
    """(log offset, next_index, slots) of a primary image with a decodable superblock."""
    sb = L.Superblock.decode(device)
    n = L.LogHeader.decode(device, sb.log_offset).next_index
    return sb.log_offset, n, L.log_slots(sb.log_len)


def entries(device: bytearray) -> list[bytes]:
    """The used entries of a primary image, as 544-byte strings."""
    off, n, slots = _log(device)
    base = off + L.HEADER_SIZE
    return [bytes(device[base + L.ENTRY_SIZE * i: base + L.ENTRY_SIZE * (i + 1)]) for i in range(min(n, slots))]


def assemble(device: bytearray, new: list[bytes], *, renumber: bool = True) -> None:
    """Write `new` as the log's entries (zeroing the rest of the old ones), set next_index and
    next_seqnum, renumber seqnums to the slot (if asked) and reseal every CRC."""
    off, n, slots = _log(device)
    new = new[:slots]
    base = off + L.HEADER_SIZE
    old_end = base + L.ENTRY_SIZE * max(n, len(new))
    device[base:old_end] = bytes(old_end - base)
    for i, e in enumerate(new):
        at = base + L.ENTRY_SIZE * i
        device[at:at + L.ENTRY_SIZE] = e
        if renumber:
            struct.pack_into("<Q", device, at, i)
    struct.pack_into("<QQ", device, off + L.LOG_HEADER.offsets["next_seqnum"], len(new), len(new))
    L.reseal(device)


def set_field(device: bytearray, where: str, field: str, value: int | bytes, entry: int = 0, *,
              reseal: bool = True) -> None:
    """Set a named field: `where` is "superblock", "log_header", or an entry struct name
    ("log_entry", "file_meta", "interleave_meta", "mkdir", "add_daxdev") of entry `entry`."""
    at, size = L.field_span(where, field)
    if where not in ("superblock", "log_header"):
        off, _, _ = _log(device)
        at += off + L.HEADER_SIZE + L.ENTRY_SIZE * entry
    elif where == "log_header":
        at += L.Superblock.decode(device).log_offset
    data = value if isinstance(value, bytes) else int(value).to_bytes(size, "little")
    device[at:at + size] = data[:size].ljust(size, b"\0")
    if reseal:
        L.reseal(device)


def entry_type(e: bytes) -> int:
    return int.from_bytes(e[8:12], "little")


def adds(es: list[bytes]) -> list[int]:
    return [i for i, e in enumerate(es) if entry_type(e) == L.EntryType.ADD_DAXDEV]


# -- transplant: the ADD_DAXDEV families of the mission ------------------------------------------


def add_out_of_order(device: bytearray, rng: random.Random) -> Corruption | None:
    es = entries(device)
    a = adds(es)
    if len(a) < 2:
        return None
    i, j = sorted(rng.sample(a, 2))
    es[i], es[j] = es[j], es[i]
    assemble(device, es)
    return Corruption("add_out_of_order", Mode.TRANSPLANT, f"swapped ADD_DAXDEV entries {i} and {j}")


def add_duplicate(device: bytearray, rng: random.Random) -> Corruption | None:
    es = entries(device)
    a = adds(es)
    if not a:
        return None
    i = rng.choice(a)
    j = rng.randint(i + 1, len(es))
    es.insert(j, es[i])
    assemble(device, es)
    return Corruption("add_duplicate", Mode.TRANSPLANT, f"copied ADD_DAXDEV entry {i} to {j}")


def add_gap(device: bytearray, rng: random.Random) -> Corruption | None:
    es = entries(device)
    a = adds(es)
    if not a:
        return None
    i = rng.choice(a)
    del es[i]
    assemble(device, es)
    return Corruption("add_gap", Mode.TRANSPLANT, f"dropped ADD_DAXDEV entry {i}")


def use_before_define(device: bytearray, rng: random.Random) -> Corruption | None:
    """Move a file that references index k > 0 to just before the ADD_DAXDEV defining k."""
    es = entries(device)
    for i, e in enumerate(es):
        if entry_type(e) != L.EntryType.ADD_DAXDEV:
            continue
        index = int.from_bytes(e[40:44], "little")
        users = [j for j in range(i + 1, len(es)) if entry_type(es[j]) == L.EntryType.FILE
                 and index in _devindices(es[j])]
        if users:
            j = rng.choice(users)
            es.insert(i, es.pop(j))
            assemble(device, es)
            return Corruption("use_before_define", Mode.TRANSPLANT, f"moved file entry {j} before ADD_DAXDEV {i}")
    return None


def _devindices(e: bytes) -> set[int]:
    p = L.LogEntry.decode(e).payload
    if not isinstance(p, L.FileMeta) or isinstance(p.fmap, L.RawFmap):
        return set()
    exts = p.fmap.strips if isinstance(p.fmap, L.InterleavedFmap) else p.fmap.extents
    return {x.devindex for x in exts}


def shuffle_entries(device: bytearray, rng: random.Random) -> Corruption | None:
    es = entries(device)
    if len(es) < 2:
        return None
    i, j = rng.sample(range(len(es)), 2)
    es.insert(j, es.pop(i))
    assemble(device, es)
    return Corruption("shuffle_entries", Mode.TRANSPLANT, f"moved entry {i} to {j}")


# -- fix-all: field edits with CRCs recomputed ----------------------------------------------------


def _edit_an_add(device: bytearray, rng: random.Random, field: str, value: int | bytes, op: str,
                 what: str) -> Corruption | None:
    a = adds(entries(device))
    if not a:
        return None
    i = rng.choice(a)
    set_field(device, "add_daxdev", field, value, i)
    return Corruption(op, Mode.FIX_ALL, f"ADD_DAXDEV entry {i} {what}")


def add_claims_index_zero(device: bytearray, rng: random.Random) -> Corruption | None:
    return _edit_an_add(device, rng, "index", 0, "add_claims_index_zero", "claims index 0")


def add_primary_uuid(device: bytearray, rng: random.Random) -> Corruption | None:
    return _edit_an_add(device, rng, "uuid", L.Superblock.decode(device).dev_uuid, "add_primary_uuid",
                        "re-adds the primary's UUID")


FIELDS = {
    "superblock": ["version", "log_offset", "log_len", "alloc_unit", "flags", "dd_size", "dev_uuid"],
    "log_header": ["len", "last_index", "next_seqnum", "next_index"],
    "file_meta": ["size", "mode", "relpath", "ext_type", "nextents", "se0_devindex", "se0_offset",
                  "se0_len", "se1_devindex"],
    "interleave_meta": ["niext", "nstrips", "chunk_size", "st0_devindex", "st1_offset", "st2_len"],
    "mkdir": ["relpath", "mode"],
    "add_daxdev": ["index", "uuid", "size"],
    "log_entry": ["type", "seqnum"],
}
INTERESTING = [0, 1, 2, 15, 16, 17, 63, 64, 200, 4095, 4096, 1 << 21, (1 << 21) + 1, 1 << 32, (1 << 64) - 1]


def field_edit(device: bytearray, rng: random.Random) -> Corruption | None:
    """Set one named field of the superblock, the header or an entry to an interesting value."""
    es = entries(device)
    where = rng.choice(list(FIELDS))
    if where not in ("superblock", "log_header") and not es:
        return None
    field = rng.choice(FIELDS[where])
    kind = {"file_meta": 0, "interleave_meta": 0, "mkdir": 1, "add_daxdev": 3}.get(where)
    fitting = [k for k, e in enumerate(es) if kind is None or entry_type(e) == kind]
    if where not in ("superblock", "log_header") and not fitting:
        return None
    i = rng.choice(fitting) if fitting else 0            # a payload field of an entry of its own type
    _, size = L.field_span(where, field)
    if field == "relpath":
        value: int | bytes = rng.choice([b"", b"/abs", b"../up", b"a/../../x", b"x" * 80, b".meta/x",
                                         b"a//b", b"\xff\xfe", b"."])
    elif size == 16:
        value = rng.randbytes(16) if rng.random() < 0.5 else bytes(16)
    else:
        value = rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)
    set_field(device, where, field, value, i)
    return Corruption("field_edit", Mode.FIX_ALL, f"{where}.{field}[{i}] = {value!r}")


# -- raw / checks-off: bytes flipped, CRCs stale --------------------------------------------------


def flip_bytes(device: bytearray, rng: random.Random, mode: Mode = Mode.RAW) -> Corruption | None:
    off, n, _ = _log(device)
    regions = [(0, L.SUPERBLOCK.size), (off, off + L.HEADER_SIZE + L.ENTRY_SIZE * max(n, 1))]
    lo, hi = rng.choice(regions)
    spots = []
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(lo, hi)
        device[at] ^= 1 << rng.randrange(8)
        spots.append(at)
    return Corruption("flip_bytes", mode, f"flipped bits at {spots}")


def checks_off(device: bytearray, rng: random.Random) -> Corruption | None:
    return flip_bytes(device, rng, Mode.CHECKS_OFF)


# -- fix-all: the mutator's entry operators, on a built image -----------------------------------


def _via_log(name: str, device: bytearray, rng: random.Random) -> Corruption | None:
    """Run `gen.mutate`'s entry operator `name` on the log of a built primary, then write the
    entries back (seqnums renumbered if they moved) and reseal."""
    from harness.gen import mutate
    off, _, _ = _log(device)
    log = mutate.Log(bytearray(device[:L.SUPERBLOCK.size]), bytearray(device[off:off + L.HEADER_SIZE]),
                     [bytearray(e) for e in entries(device)], b"")
    what = mutate.IMAGE_OPERATORS[name](log, rng)
    if what is None:
        return None
    assemble(device, [bytes(e) for e in log.entries], renumber=log.moved)
    return Corruption(name, Mode.FIX_ALL, what)


def conflicting_entry(device: bytearray, rng: random.Random) -> Corruption | None:
    return _via_log("conflicting_entry", device, rng)


def near_miss_name(device: bytearray, rng: random.Random) -> Corruption | None:
    return _via_log("near_miss_name", device, rng)


def many_extents(device: bytearray, rng: random.Random) -> Corruption | None:
    return _via_log("many_extents", device, rng)


def full_table(device: bytearray, rng: random.Random) -> Corruption | None:
    return _via_log("full_table", device, rng)


def size_not_chunk_multiple(device: bytearray, rng: random.Random) -> Corruption | None:
    return _via_log("size_not_chunk_multiple", device, rng)


def retarget_devindex(device: bytearray, rng: random.Random) -> Corruption | None:
    return _via_log("retarget_devindex", device, rng)


Operator = Callable[[bytearray, random.Random], "Corruption | None"]

OPERATORS: dict[str, Operator] = {f.__name__: f for f in (
    add_out_of_order, add_duplicate, add_gap, use_before_define, shuffle_entries,
    add_claims_index_zero, add_primary_uuid, field_edit, flip_bytes, checks_off,
    conflicting_entry, near_miss_name, many_extents, full_table, size_not_chunk_multiple, retarget_devindex)}

FAMILIES: dict[str, tuple[str, ...]] = {
    "corrupted_log": ("field_edit", "flip_bytes", "checks_off", "shuffle_entries", "conflicting_entry",
                      "near_miss_name", "many_extents", "size_not_chunk_multiple"),
    "add_daxdev_order": ("add_out_of_order", "add_duplicate", "add_gap", "use_before_define", "full_table",
                         "retarget_devindex"),
    "missing_primary": ("add_claims_index_zero", "add_primary_uuid"),
}


def corrupt(device: bytearray, rng: random.Random, family: str | None = None) -> Corruption | None:
    """Apply one operator (from `family`, or any), trying others when the first does not apply."""
    names = list(FAMILIES[family]) if family else list(OPERATORS)
    rng.shuffle(names)
    for name in names:
        c = OPERATORS[name](device, rng)
        if c is not None:
            return c
    return None
