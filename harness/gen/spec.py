"""Specs: a whole famfs described as values (devices, then log operations), and building one.

A `Spec` is what the generators produce and what a structured fuzz input decodes to: the
devices (UUID, size, and each node's local name for it) and the ordered operations the master
performs (mkdir, create a file on one device or striped over several, add a daxdev). A spec is
always well formed: `build()` turns it into device buffers with a valid image, and the expected
result is what `Image` recorded. Corruption operators (`gen.corrupt`) then break it on purpose.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Union

from harness.famfs.errors import ImageError
from harness.famfs.image import Image, Interleave
from harness.famfs.layout import ALLOC_UNIT, InterleavedFmap

SMALL_LOG = 64 << 10            # 112 entries: plenty for fuzz cases, cheap to copy and replay


@dataclass(frozen=True, slots=True)
class Device:
    """One daxdev: its UUID and size. `names[k]` is its local name on node k."""

    uuid: bytes
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
    """Device buffers reused across cases: allocating and zeroing tens of MiB per case would
    dominate a fuzz run. mkfs zeroes what must be zero (superblock region, log); file data is
    written or stamped by `build`; the rest holds earlier cases' bytes, which no check reads."""

    def __init__(self) -> None:
        self.free: dict[int, list[bytearray]] = {}
        self.lent: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        stack = self.free.get(size)
        buf = stack.pop() if stack else bytearray(size)
        self.lent.append(buf)
        return buf

    def give_back(self) -> None:
        for buf in self.lent:
            self.free.setdefault(len(buf), []).append(buf)
        self.lent = []


def stamp(buf: bytearray, offset: int, length: int, tag: int) -> None:
    """Mark every 4 KiB page of [offset, offset+length) with (tag ^ page offset): cheap content
    that differs by device and by position, so a read from the wrong place cannot pass."""
    pack = _STAMP.pack_into
    for at in range(offset, offset + length, 4096):
        pack(buf, at, tag ^ at)


_STAMP = struct.Struct("<Q")


def build(spec: Spec, pool: BufferPool | None = None, *, data: str = "pattern") -> Built:
    """Format every device, then apply the ops in order. Ops that cannot be placed (a full
    device, an index not added yet, a path whose parent is missing) are skipped and listed.
    `data`: "pattern" writes each file's `image.pattern`; "stamp" only stamps its pages (fast)."""
    devices = [pool.take(d.size) if pool else bytearray(d.size) for d in spec.devices]
    image = Image.mkfs(devices, [d.size for d in spec.devices], uuids=[d.uuid for d in spec.devices],
                       log_len=spec.log_len, alloc_unit=spec.alloc_unit, add_secondaries=False)
    built = Built(spec, devices, image)
    position_of: dict[int, int] = {0: 0}          # spec device -> index in the log
    for op in spec.ops:
        try:
            _apply(built, op, position_of, data)
        except ImageError:
            built.skipped.append(op)
    return built


def _apply(built: Built, op: Op, position_of: dict[int, int], data: str) -> None:
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
    if data == "stamp":
        exts = f.fmap.strips if isinstance(f.fmap, InterleavedFmap) else f.fmap.extents
        for e in exts:
            stamp(built.image.devices[e.devindex], e.offset, e.len, int.from_bytes(image.table[e.devindex].uuid[:8], "little"))
