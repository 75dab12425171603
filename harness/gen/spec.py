"""Specs: a whole famfs described as values (devices, then log operations), and building one.

A `Spec` is what the generators produce and what a structured fuzz input decodes to: the
devices (UUID, size, and each node's local name for it) and the ordered operations the master
performs (mkdir, create a file on one device or striped over several, add a daxdev). A spec is
always well formed: `build()` turns it into device buffers with a valid image, and the expected
result is what `Image` recorded. Corruption operators (`gen.corrupt`) then break it on purpose.
"""
from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import Union

from harness.famfs.ids import Uuid
from harness.famfs.errors import ImageError
from harness.famfs.image import Image, Interleave
from harness.famfs.layout import ALLOC_UNIT, SUPERBLOCK_SIZE, InterleavedFmap

SMALL_LOG = 64 << 10            # 112 entries: plenty for fuzz cases, cheap to copy and replay


@dataclass(frozen=True, slots=True)
class Device:
    """One daxdev: its UUID and size. `names[k]` is its local name on node k."""

    uuid: Uuid
    size: int
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Mkdir:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class Create:
    """A file: on daxdev `devindex`, or striped round-robin over `strips` (daxdev indices)."""

    path: str
    size: int
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    devindex: int = 0
    strips: tuple[int, ...] = ()
    chunk: int = ALLOC_UNIT


@dataclass(frozen=True, slots=True)
class AddDaxdev:
    """ADD_DAXDEV of spec device `device` (its position in `Spec.devices`), at the next index."""

    device: int


Op = Union[Mkdir, Create, AddDaxdev]


@dataclass(frozen=True, slots=True)
class Spec:
    """Devices (the first is the primary) and the master's operations, in log order."""

    devices: tuple[Device, ...]
    ops: tuple[Op, ...] = ()
    log_len: int = SMALL_LOG
    alloc_unit: int = ALLOC_UNIT
    nodes: tuple[str, ...] = ("node0",)

    def node_names(self, node: int) -> list[str]:
        """Local device names on node `node` (spec order), defaulting to daxN.0 in spec order."""
        return [d.names[node] if node < len(d.names) else f"dax{i}.0" for i, d in enumerate(self.devices)]


@dataclass
class Built:
    """A spec written onto device buffers; `image` knows what was written (expected state)."""

    spec: Spec
    devices: list[bytearray]
    image: Image
    skipped: list[Op] = field(default_factory=list)     # ops the builder could not place (no space)

    @property
    def primary(self) -> bytearray:
        return self.devices[0]


class BufferPool:
    """Device buffers reused across cases, and the stamps in them.

    Allocating, zeroing and stamping tens of MiB per case would dominate a fuzz run, so a buffer
    the pool made keeps a canonical state between cases: the superblock region [0, 2 MiB) is
    zero, and every page of a 2 MiB chunk that `build` ever stamped keeps its stamp (see `stamp`;
    the tag is the buffer's own, so two devices of one case never share stamps). A case then
    costs only what it writes: `build` formats without zeroing the head (`mkfs(head_is_zero)`),
    stamps the chunks of a file's extents that are not stamped yet, and records what the case
    overwrote (the log, file patterns); `give_back` zeroes the first page (the superblocks) and
    forgets the stamps of the chunks that were overwritten. What a corruption writes outside the
    first page and the log (a moved log offset) stays until a chunk is stamped again: a later
    case may read those bytes, and reads the same bytes the oracle gathers from the buffer.

    A buffer lent by `take` (not through `build`) may have been written anywhere: on its return
    its head is zeroed and all its stamps are forgotten."""

    def __init__(self) -> None:
        self.free: dict[int, list[bytearray]] = {}
        self.lent: list[tuple[bytearray, bool]] = []
        self.stamped: dict[int, bytearray] = {}       # id(buffer) -> one flag per STAMP_CHUNK
        self.tag: dict[int, int] = {}                 # id(buffer) -> its stamp tag
        self.dirty: list[tuple[bytearray, int, int]] = []

    def take(self, size: int, *, managed: bool = False) -> bytearray:
        """A buffer of `size` bytes. `managed` (build only): the caller reports what it writes."""
        stack = self.free.get(size)
        if stack:
            buf = stack.pop()
        else:
            buf = bytearray(size)
            self.stamped[id(buf)] = bytearray(-(-size // STAMP_CHUNK))
            self.tag[id(buf)] = _TAG_BASE + len(self.tag)
        self.lent.append((buf, managed))
        return buf

    def stamp(self, buf: bytearray, offset: int, length: int) -> None:
        """Make sure every page of [offset, offset+length) carries `buf`'s stamp."""
        flags = self.stamped[id(buf)]
        first, last = offset // STAMP_CHUNK, min(-(-(offset + length) // STAMP_CHUNK), len(flags))
        for c in range(first, last):
            if not flags[c]:
                stamp(buf, c * STAMP_CHUNK, min(STAMP_CHUNK, len(buf) - c * STAMP_CHUNK), self.tag[id(buf)])
                flags[c] = 1

    def overwritten(self, buf: bytearray, offset: int, length: int) -> None:
        """[offset, offset+length) of a lent buffer was written over: restamp it when next needed."""
        self.dirty.append((buf, offset, length))

    def give_back(self) -> None:
        for buf, offset, length in self.dirty:
            flags = self.stamped[id(buf)]
            for c in range(offset // STAMP_CHUNK, min(-(-(offset + length) // STAMP_CHUNK), len(flags))):
                flags[c] = 0
        self.dirty = []
        for buf, managed in self.lent:
            if managed:
                buf[0:_PAGE] = _ZERO_PAGE
            else:
                buf[0:SUPERBLOCK_SIZE] = bytes(min(SUPERBLOCK_SIZE, len(buf)))
                flags = self.stamped[id(buf)]
                flags[:] = bytes(len(flags))
            self.free.setdefault(len(buf), []).append(buf)
        self.lent = []


STAMP_CHUNK = 2 << 20            # stamps are written and forgotten a chunk at a time
_PAGE = 4096
_ZERO_PAGE = bytes(_PAGE)
_TAG_BASE = 0x5354_4D50 << 32    # b"STMP": tags of pool buffers, one per buffer


def stamp(buf: bytearray, offset: int, length: int, tag: int) -> None:
    """Mark every 4 KiB page of [offset, offset+length) with two u64 words, `tag` and the page's
    device offset: cheap content that differs by device and by position, so a read from the
    wrong place cannot pass. Written in bulk (strided slice assignment) when `offset` is
    8-byte aligned; the rest of each page is left as it is."""
    end = min(offset + length, len(buf))
    n = len(range(offset, end, _PAGE))
    if n == 0:
        return
    if offset % 8 or len(buf) % 8:
        for at in range(offset, min(end, len(buf) - 15), _PAGE):
            _STAMP.pack_into(buf, at, tag, at)
        return
    last = offset + (n - 1) * _PAGE
    if last + 16 > len(buf):                 # the last page has no room for both words
        n -= 1
        if n == 0:
            return
    words = memoryview(buf).cast("Q")
    w, step = offset // 8, _PAGE // 8
    words[w:w + n * step:step] = array("Q", (tag,)) * n
    words[w + 1:w + 1 + n * step:step] = _positions(offset, n)
    words.release()


_STAMP = struct.Struct("<QQ")
_POSITIONS: list[array] = [array("Q")]


def _positions(offset: int, n: int) -> array:
    """array('Q') of offset, offset+4096, ... (n values), sliced out of a cached table when
    `offset` is page aligned."""
    if offset % _PAGE:
        return array("Q", range(offset, offset + n * _PAGE, _PAGE))
    first = offset // _PAGE
    table = _POSITIONS[0]
    if len(table) < first + n:
        table = _POSITIONS[0] = array("Q", range(0, max(2 * (first + n), 1 << 14) * _PAGE, _PAGE))
    return table[first:first + n]


def build(spec: Spec, pool: BufferPool | None = None, *, data: str = "pattern") -> Built:
    """Format every device, then apply the ops in order. Ops that cannot be placed (a full
    device, an index not added yet, a path whose parent is missing) are skipped and listed.
    `data`: "pattern" writes each file's `image.pattern`; "stamp" only makes sure its pages carry
    their device's stamp (fast: see `BufferPool`). Without `pool`, fresh buffers (a pool of its own)."""
    pool = pool if pool is not None else BufferPool()
    devices = [pool.take(d.size, managed=True) for d in spec.devices]
    image = Image.mkfs(devices, [d.size for d in spec.devices], uuids=[d.uuid for d in spec.devices],
                       log_len=spec.log_len, alloc_unit=spec.alloc_unit, add_secondaries=False,
                       head_is_zero=True)
    pool.overwritten(devices[0], image.sb.log_offset, image.sb.log_len)
    built = Built(spec, devices, image)
    position_of: dict[int, int] = {0: 0}          # spec device -> index in the log
    for op in spec.ops:
        try:
            _apply(built, op, position_of, data, pool)
        except ImageError:
            built.skipped.append(op)
    return built


def _apply(built: Built, op: Op, position_of: dict[int, int], data: str, pool: BufferPool) -> None:
    image, spec = built.image, built.spec
    ns = image.expected
    if isinstance(op, AddDaxdev):
        if op.device in position_of or not 0 < op.device < len(spec.devices):
            raise ImageError.no_space(f"device {op.device} already added or unknown")
        d = spec.devices[op.device]
        position_of[op.device] = image.attach(built.devices[op.device], d.size, d.uuid)
        return
    parent = op.path.rpartition("/")[0]
    if op.path in ns or not ns.is_dir(parent):
        raise ImageError.no_space(f"{op.path!r}: exists or parent missing")
    if isinstance(op, Mkdir):
        image.mkdir(op.path, op.mode, op.uid, op.gid)
        return
    ndev = len(image.table)
    content = None if data == "pattern" else b""
    if op.strips:
        if any(s >= ndev for s in op.strips):
            raise ImageError.no_space("strip on an index not defined yet")
        f = image.create(op.path, op.size, mode=op.mode, uid=op.uid, gid=op.gid,
                         interleave=Interleave(len(op.strips), op.chunk, op.strips), data=content)
    else:
        if op.devindex >= ndev:
            raise ImageError.no_space("file on an index not defined yet")
        f = image.create(op.path, op.size, mode=op.mode, uid=op.uid, gid=op.gid, devindex=op.devindex,
                         data=content)
    exts = f.fmap.strips if isinstance(f.fmap, InterleavedFmap) else f.fmap.extents
    for e in exts:
        buf = built.image.devices[e.devindex]
        assert isinstance(buf, bytearray), type(buf)          # the pool lends bytearrays
        if data == "stamp":
            pool.stamp(buf, e.offset, e.len)
        else:
            pool.overwritten(buf, e.offset, e.len)
