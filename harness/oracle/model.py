"""The reference model: what replay of an image must produce, computed independently of replay.py.

The model shares only `layout` decoding with the system under test. Everything else is written
again, in a different shape: each rule of docs/architecture.md is a small predicate over a decoded entry and
the state so far, tried in a fixed order, and the first that fails names the invariant. The
state is plain data (a dict of paths, a list of UUIDs). When the model and `replay.py` disagree on
the verdict (accept/reject, which invariant, which entry, the resulting namespace or index table),
one of them is wrong; the oracle reports it as an invariant violation of the ID in question.

Expected outcomes are compared by value: `Verdict` holds the image-level error (an invariant ID)
or the per-entry rejections as (entry, ID) pairs, where replay stopped, the index table as
(uuid, size) pairs, and the namespace as {path: description}.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from harness.famfs import layout as L
from harness.famfs.ids import Uuid
from harness.famfs.invariants import Invariant as I
from harness.famfs.replay import Replay


@dataclass(frozen=True)
class Verdict:
    """What replay must produce for one image."""

    image_error: I | None = None                         # an invariant ID if the image is unusable
    rejections: tuple[tuple[int, I], ...] = ()            # (entry, invariant ID)
    stopped_at: int | None = None
    table: tuple[tuple[Uuid, int], ...] = ()              # index -> (uuid, size)
    namespace: tuple[tuple[str, tuple], ...] = ()          # sorted (path, description)


@dataclass
class _State:
    uuids: list[Uuid] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)     # path -> "d" | "f"
    desc: dict[str, tuple] = field(default_factory=dict)


_Buf = bytes | bytearray | memoryview


def _u(buf: _Buf, off: int, n: int = 8) -> int:
    return int.from_bytes(buf[off:off + n], "little")


def _sb_problem(dev: _Buf, size: int) -> tuple[I | None, L.Superblock | None]:
    if len(dev) < 200:
        return I.SB_VALID, None
    if _u(dev, 0) != L.SUPER_MAGIC or _u(dev, 8) != 48 or _u(dev, 96) != zlib.crc32(dev[:96]):
        return I.SB_VALID, None
    if _u(dev, 32) not in (4096, 2 << 20):
        return I.SB_VALID, None
    if _u(dev, 104, 4) & 2 or dev[64:80] == bytes(16):
        return I.IDX_PRIMARY, None
    log_off, log_len = _u(dev, 16), _u(dev, 24)
    if log_off < 200 or log_len < 48 + 544 or log_off + log_len > min(size, len(dev)):
        return I.SB_VALID, None
    return None, L.Superblock.decode(dev)


def _header_problem(dev: _Buf, sb: L.Superblock) -> I | None:
    o = sb.log_offset
    magic, length, last, crc, nseq, nidx = (_u(dev, o + 8 * k) for k in range(6))
    slots = (sb.log_len - 48) // 544
    ok = (magic == L.LOG_MAGIC and crc == zlib.crc32(dev[o:o + 24]) and length == sb.log_len
          and last == slots - 1 and nidx <= slots and nseq == nidx)
    return None if ok else I.LOG_HEADER


def _path_ok(raw: bytes) -> str | None:
    """The path an entry names, or None when it escapes (NS-CONTAINED)."""
    if b"\0" not in raw.ljust(80, b"\0")[:80]:
        return None
    name = raw.split(b"\0")[0]
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split("/")
    if not text or text[0] == "/" or any(p in ("", ".", "..") for p in parts):
        return None
    return text


def _place_problem(st: _State, path: str) -> bool:
    parent = path.rpartition("/")[0]
    top = path.split("/")[0]
    return (top == ".meta" or path in st.kinds
            or (parent != "" and st.kinds.get(parent) != "d"))


def _fmap_extents(fm: L.Fmap, size: int, au: int) -> tuple[L.SimpleExtent, ...] | None:
    """The extents of a well-shaped fmap (FMAP-SHAPE), or None."""
    if isinstance(fm, L.SimpleFmap):
        if fm.nextents < 1 or fm.nextents > 16:
            return None
        exts = fm.slots[:fm.nextents]
        if sum(e.len for e in exts) < size:
            return None
    elif isinstance(fm, L.InterleavedFmap):
        n, c = fm.nstrips, fm.chunk_size
        if fm.niext != 1 or not 1 <= n <= 16 or c < au or c % au or bin(c).count("1") != 1:
            return None
        if c >= 1 << 32:                    # the GET_FMAP reply carries the chunk size in 32 bits
            return None
        exts = fm.strip_slots[:n]
        # Each strip must hold every chunk striped onto it. Counted by stripes (one chunk on each
        # strip): every strip holds one chunk per full stripe, and strip k also holds what of the
        # last, partial stripe falls on its k-th chunk. Closed form: a file of 2^60 bytes costs
        # what a file of one chunk does (a loop per chunk ran for minutes).
        full, rest = divmod(size, c * n)
        if any(e.len < full * c + min(c, max(0, rest - k * c)) for k, e in enumerate(exts)):
            return None
    else:
        return None
    if any(e.len == 0 or e.offset % au or e.len % au for e in exts):
        return None
    return exts


def verdict(dev: bytes | bytearray | memoryview, size: int | None = None, *, check_crc: bool = True) -> Verdict:
    """The expected outcome of replaying primary device bytes `dev` of real size `size`.
    The device is read through a view (a compact image is 10 MiB, and copying it was most of the
    log_replay target's time); what the model keeps is copied out as bytes, entry by entry."""
    dev = memoryview(dev).toreadonly()
    if size is None:
        size = _u(dev, 112) if len(dev) >= 120 else 0
    problem, sb = _sb_problem(dev, size)
    if problem:
        return Verdict(image_error=problem)
    assert sb is not None
    problem = _header_problem(dev, sb)
    if problem:
        return Verdict(image_error=problem)
    st = _State([sb.dev_uuid], [size])
    reserved0 = max(2 << 20, sb.log_offset + sb.log_len)
    out: list[tuple[int, I]] = []
    stopped = None
    base = sb.log_offset + 48
    for i in range(_u(dev, sb.log_offset + 40)):
        raw = bytes(dev[base + 544 * i: base + 544 * (i + 1)])
        if (check_crc and _u(raw, 536) != zlib.crc32(raw[:536])) or _u(raw, 0) != i:
            out.append((i, I.LOG_PREFIX))
            stopped = i
            break
        bad = _entry(st, i, L.LogEntry.decode(raw), sb.alloc_unit, reserved0)
        if bad:
            out.append((i, bad))
    ns = tuple(sorted(st.desc.items()))
    return Verdict(None, tuple(out), stopped, tuple(zip(st.uuids, st.sizes, strict=True)), ns)


def _entry(st: _State, i: int, e: L.LogEntry, au: int, reserved0: int) -> I | None:
    p = e.payload
    if e.type == 3:
        assert isinstance(p, L.AddDaxdev)
        if p.index == 0:
            return I.IDX_PRIMARY
        if len(st.uuids) >= 64 or p.index != len(st.uuids):
            return I.IDX_DENSE
        if p.uuid in st.uuids:
            return I.IDX_UUID_UNIQUE
        st.uuids.append(p.uuid)
        st.sizes.append(p.size)
        return None
    if e.type == 1:
        assert isinstance(p, L.Mkdir)
        path = _path_ok(p.relpath)
        if path is None:
            return I.NS_CONTAINED
        if _place_problem(st, path):
            return I.NS_CONFLICT
        st.kinds[path] = "d"
        st.desc[path] = ("d", p.mode & 0o7777, p.uid, p.gid)
        return None
    if e.type != 0:
        return I.ENTRY_TYPE
    assert isinstance(p, L.FileMeta)
    path = _path_ok(p.relpath)
    if path is None:
        return I.NS_CONTAINED
    exts = _fmap_extents(p.fmap, p.size, au)
    if exts is None:
        return I.FMAP_SHAPE
    if any(x.devindex >= len(st.uuids) for x in exts):
        return I.IDX_DEFINED_BEFORE_USE
    for x in exts:
        lo = reserved0 if x.devindex == 0 else 2 << 20
        if x.offset + x.len >= 1 << 64 or x.offset + x.len > st.sizes[x.devindex] or x.offset < lo:
            return I.EXT_BOUNDS
    if _place_problem(st, path):
        return I.NS_CONFLICT
    st.kinds[path] = "f"
    chunk = p.fmap.chunk_size if isinstance(p.fmap, L.InterleavedFmap) else None
    st.desc[path] = ("f", p.size, p.mode & 0o7777, p.uid, p.gid, tuple(tuple(x) for x in exts), chunk)
    return None


def observed(result: Replay) -> Verdict:
    """The same shape, read off a `replay.Replay` (the system under test's answer)."""
    ns: dict[str, tuple] = {}
    for d in result.namespace.dirs.values():
        ns[d.path] = ("d", d.mode, d.uid, d.gid)
    for f in result.namespace.files.values():
        fm = f.fmap
        exts = fm.strips if isinstance(fm, L.InterleavedFmap) else fm.extents
        ns[f.path] = ("f", f.size, f.mode, f.uid, f.gid, tuple(tuple(x) for x in exts),
                      fm.chunk_size if isinstance(fm, L.InterleavedFmap) else None)
    rejections = []
    for e in result.rejections:
        assert e.entry is not None, e                    # replay records only entry-level rejections
        rejections.append((e.entry, e.invariant))
    return Verdict(None, tuple(rejections), result.stopped_at,
                   tuple((d.uuid, d.size) for d in result.table),
                   tuple(sorted(ns.items())))


def carried_uuid(device: bytes | bytearray | memoryview) -> Uuid | None:
    """The device UUID a device's superblock carries, if the superblock is valid (magic and CRC):
    what identifies the device on a node. None for a device no resolver would recognise."""
    if len(device) < 200 or _u(bytes(device[:8]), 0) != L.SUPER_MAGIC:
        return None
    head = bytes(device[:104])
    return Uuid(head[64:80]) if _u(head, 96) == zlib.crc32(head[:96]) else None
