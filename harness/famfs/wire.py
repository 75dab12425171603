"""GET_FMAP / GET_DAXDEV / INIT messages, byte-exact, per kernel ABI generation (docs/famfs-format.md section 3).

Pure bytes <-> values. What the kernel *does* with a message (validation per generation, the
daxdev table) is `kernel.py`; what the daemon puts in it is `daemon.py`.

Generations, selectable by name (`abi(name)`):

============  ==========  ===========  ==========  ======  =====  ================================
name          GET_FMAP    GET_DAXDEV   INIT bit    slots   align  registration
============  ==========  ===========  ==========  ======  =====  ================================
pull-name     54          55           1 << 43     24      2 MiB  GET_DAXDEV(index) -> device path
pull-devt     54          55           1 << 43     24      2 MiB  GET_DAXDEV(index) -> index+dev_t
push-fd       54          --           1 << 43     64      4 KiB  daemon pushes (fd, index) first
backing-id    54          --           1 << 43     64      4 KiB  BACKING_OPEN(fd) -> kernel id
============  ==========  ===========  ==========  ======  =====  ================================

`pull-devt` is the change proposed on linux-fsdevel on 2026-06-02 (docs/famfs-format.md section 5): the reply carries
the index (u16 @0, already there) and the dev_t in the reserved u64 @8 of `fuse_daxdev_out`; the
name stays for logs. `push-fd` is the newest 2026 tree (`fuse_backing_map` with the index in the
former padding); `backing-id` is the May 2026 proposal (padding 0, id returned by the ioctl).

The encoder never reproduces the C daemon's known wire bugs (docs/famfs-format.md section 3): strips carry a u32
devindex at offset 0, the interleave pointer advances per extent, a chunk size that does not fit
u32 is refused rather than truncated, and `fmap_size` is filled where the generation reads it.
"""
from __future__ import annotations

import enum
import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.famfs.errors import FamfsError
from harness.famfs.invariants import Invariant
from harness.famfs.layout import InterleavedFmap

if TYPE_CHECKING:
    from harness.famfs.namespace import File

FILE_REG, FILE_SUPERBLOCK, FILE_LOG = 0, 1, 2
EXT_SIMPLE, EXT_INTERLEAVE = 0, 1
FMAP_VERSION = 1
NAME_MAX = 256
U32_MAX = (1 << 32) - 1

HEADER = struct.Struct("<BBHIIIQQ")       # file_type, reserved, fmap_version, ext_type, nextents,
                                          # fmap_size (was reserved0), file_size, reserved1
SIMPLE = struct.Struct("<IIQQ")           # se_devindex, reserved, se_offset, se_len
IEXT = struct.Struct("<IIQQ")             # ie_nstrips, ie_chunk_size, ie_nbytes, reserved
DAXDEV_IN = struct.Struct("<I")           # daxdev_num
DAXDEV_OUT = struct.Struct("<HHIQQ256s")  # index, reserved, reserved2, reserved3 (dev_t), reserved4, name
BACKING_MAP = struct.Struct("<iIQ")       # fd, flags, padding (push-fd: daxdev index)
assert HEADER.size == 32 and SIMPLE.size == 24 and IEXT.size == 24 and DAXDEV_OUT.size == 280


class WireError(FamfsError):
    """Raised when a message cannot be encoded or does not decode (truncated, inconsistent)."""

    @classmethod
    def bad(cls, message: str) -> "WireError":
        return cls(errno.EINVAL, Invariant.FMAP_SHAPE, message)

    @classmethod
    def unknown_abi(cls, name: str) -> "WireError":
        return cls(errno.EINVAL, Invariant.IDX_LOOKUP,
                   f"unknown ABI generation {name!r}; known: {', '.join(ABIS)}")


class Registration(enum.StrEnum):
    """How a generation's kernel learns which device a daxdev index names."""

    PULL_NAME = "pull-name"      # the kernel asks GET_DAXDEV(index), the reply names the device path
    PULL_DEVT = "pull-devt"      # the same, the reply carries index + dev_t
    PUSH_FD = "push-fd"          # the daemon pushes an open fd per index (FUSE_DEV_IOC_DAXDEV_OPEN)
    BACKING_ID = "backing-id"    # the daemon opens a backing file and gets a kernel id to put in fmaps

    @property
    def pulls(self) -> bool:
        return self in (Registration.PULL_NAME, Registration.PULL_DEVT)


@dataclass(frozen=True, slots=True)
class Abi:
    """One kernel ABI generation: opcodes, INIT flag, limits and how daxdevs get registered."""

    name: str
    get_fmap_opcode: int
    get_daxdev_opcode: int | None
    init_flag: int
    registration: Registration
    nslots: int
    alignment: int
    interleave_ok: bool = True
    max_extents: int = 32
    max_strips: int = 32
    fmap_size_filled: bool = True
    reply_max: int = 4096


ABIS: dict[str, Abi] = {a.name: a for a in (
    Abi("pull-name", 54, 55, 1 << 43, Registration.PULL_NAME, 24, 2 << 20, fmap_size_filled=False),
    Abi("pull-devt", 54, 55, 1 << 43, Registration.PULL_DEVT, 24, 2 << 20, fmap_size_filled=False),
    Abi("push-fd", 54, None, 1 << 43, Registration.PUSH_FD, 64, 4096, reply_max=16 << 20),
    Abi("backing-id", 54, None, 1 << 43, Registration.BACKING_ID, 64, 4096, reply_max=16 << 20),
)}


def abi(name: str) -> Abi:
    """The generation called `name`, or a WireError listing the known ones."""
    try:
        return ABIS[name]
    except KeyError:
        raise WireError.unknown_abi(name) from None


def negotiate_init(gen: Abi, kernel_flags: int, server_capable_rawio: bool) -> bool:
    """FUSE_DAX_FMAP is in effect iff the kernel offered it and the server asked for it, which it
    does only when CAP_SYS_RAWIO-capable (docs/famfs-format.md section 5, access control)."""
    return bool(kernel_flags & gen.init_flag) and server_capable_rawio


@dataclass(frozen=True, slots=True)
class WireSimple:
    """`fuse_famfs_simple_ext`."""

    devindex: int
    offset: int
    len: int


@dataclass(frozen=True, slots=True)
class WireInterleave:
    """`fuse_famfs_iext` and the strips that follow it."""

    nstrips: int
    chunk_size: int
    nbytes: int
    strips: tuple[WireSimple, ...]


@dataclass(frozen=True, slots=True)
class FmapMessage:
    """A GET_FMAP reply."""

    file_type: int
    ext_type: int
    file_size: int
    extents: tuple[WireSimple, ...] = ()
    interleaved: tuple[WireInterleave, ...] = ()
    fmap_version: int = FMAP_VERSION
    fmap_size: int = 0

    @property
    def nextents(self) -> int:
        return len(self.extents) if self.ext_type == EXT_SIMPLE else len(self.interleaved)


@dataclass(frozen=True, slots=True)
class DaxdevReply:
    """`fuse_daxdev_out`: the index, the node-local device name, and (pull-devt) the dev_t."""

    index: int
    name: bytes = b""
    devt: int = 0


@dataclass(frozen=True, slots=True)
class BackingMap:
    """`fuse_backing_map` for push-fd (index in the former padding) and backing-id (padding 0)."""

    fd: int
    flags: int = 0
    index: int = 0


def _simple(buf: bytearray, e: WireSimple) -> None:
    if not 0 <= e.devindex <= U32_MAX:
        raise WireError.bad(f"devindex {e.devindex} does not fit the u32 wire field")
    buf += SIMPLE.pack(e.devindex, 0, e.offset, e.len)


def encode_fmap(msg: FmapMessage, gen: Abi) -> bytes:
    """The reply bytes for `msg`; fmap_size is the total length where `gen` reads it, else 0."""
    body = bytearray()
    if msg.ext_type == EXT_SIMPLE:
        for e in msg.extents:
            _simple(body, e)
    else:
        for ie in msg.interleaved:
            if ie.chunk_size > U32_MAX:
                raise WireError.bad(f"chunk size {ie.chunk_size:#x} does not fit the u32 wire field")
            body += IEXT.pack(ie.nstrips, ie.chunk_size, ie.nbytes, 0)
            for s in ie.strips:
                _simple(body, s)
    total = HEADER.size + len(body)
    size_field = total if gen.fmap_size_filled else msg.fmap_size
    try:
        head = HEADER.pack(msg.file_type, 0, msg.fmap_version, msg.ext_type, msg.nextents, size_field,
                           msg.file_size, 0)
    except struct.error as e:
        raise WireError.bad(f"header field out of range: {e}") from None
    return head + bytes(body)


def decode_fmap(data: bytes, gen: Abi) -> FmapMessage:
    """Parse a GET_FMAP reply without ever reading past `data`; WireError says what is wrong."""
    if len(data) < HEADER.size:
        raise WireError.bad(f"reply of {len(data)} bytes is shorter than the {HEADER.size}-byte header")
    ftype, _, version, ext_type, n, fmap_size, file_size, _ = HEADER.unpack_from(data, 0)
    at = HEADER.size

    def take(s: struct.Struct, what: str) -> tuple[int, ...]:
        nonlocal at
        if at + s.size > len(data):
            raise WireError.bad(f"{what} at byte {at} runs past the {len(data)}-byte reply")
        v = s.unpack_from(data, at)
        at += s.size
        return v

    extents: list[WireSimple] = []
    inter: list[WireInterleave] = []
    if ext_type == EXT_SIMPLE:
        if n * SIMPLE.size > len(data) - HEADER.size:
            raise WireError.bad(f"nextents {n} needs {n * SIMPLE.size} bytes, reply has {len(data) - HEADER.size}")
        for k in range(n):
            d, _, off, ln = take(SIMPLE, f"extent {k}")
            extents.append(WireSimple(d, off, ln))
    elif ext_type == EXT_INTERLEAVE:
        if n * IEXT.size > len(data) - HEADER.size:
            raise WireError.bad(f"{n} interleaved extents cannot fit a {len(data)}-byte reply")
        for k in range(n):
            nstrips, chunk, nbytes, _ = take(IEXT, f"interleaved extent {k}")
            if nstrips * SIMPLE.size > len(data) - at:
                raise WireError.bad(f"interleaved extent {k}: {nstrips} strips run past the reply")
            strips = []
            for j in range(nstrips):
                d, _, off, ln = take(SIMPLE, f"strip {j} of interleaved extent {k}")
                strips.append(WireSimple(d, off, ln))
            inter.append(WireInterleave(nstrips, chunk, nbytes, tuple(strips)))
    else:
        raise WireError.bad(f"unknown ext_type {ext_type}")
    if gen.fmap_size_filled and fmap_size and fmap_size != at:
        raise WireError.bad(f"fmap_size {fmap_size} != message length {at}")
    return FmapMessage(ftype, ext_type, file_size, tuple(extents), tuple(inter), version, fmap_size)


def fmap_from_file(f: File, gen: Abi, file_type: int = FILE_REG) -> FmapMessage:
    """The GET_FMAP message for a replayed file (`namespace.File`): its layout fmap on the wire,
    ie_nbytes = the file size (what famfs sends)."""
    fmap, size = f.fmap, f.size
    if isinstance(fmap, InterleavedFmap):
        strips = tuple(WireSimple(s.devindex, s.offset, s.len) for s in fmap.strips)
        ie = WireInterleave(fmap.nstrips, fmap.chunk_size, size, strips)
        return FmapMessage(file_type, EXT_INTERLEAVE, size, interleaved=(ie,))
    return FmapMessage(file_type, EXT_SIMPLE, size,
                       extents=tuple(WireSimple(e.devindex, e.offset, e.len) for e in fmap.extents))


def unroll(msg: FmapMessage) -> FmapMessage:
    """Interleave as a uniform simple list (for simple-only kernels): chunk c lands on strip
    c % n at offset strip.offset + (c // n) * chunk, length min(chunk, size - c * chunk)."""
    if msg.ext_type == EXT_SIMPLE:
        return msg
    out: list[WireSimple] = []
    base = 0
    for ie in msg.interleaved:
        span = min(ie.nbytes, msg.file_size - base)
        c = 0
        while c * ie.chunk_size < span:
            s = ie.strips[c % ie.nstrips]
            out.append(WireSimple(s.devindex, s.offset + (c // ie.nstrips) * ie.chunk_size,
                                  min(ie.chunk_size, span - c * ie.chunk_size)))
            c += 1
        base += span
    return FmapMessage(msg.file_type, EXT_SIMPLE, msg.file_size, extents=tuple(out))


def encode_daxdev_in(index: int) -> bytes:
    return DAXDEV_IN.pack(index)


def decode_daxdev_in(data: bytes) -> int:
    if len(data) < DAXDEV_IN.size:
        raise WireError.bad(f"GET_DAXDEV request of {len(data)} bytes")
    return DAXDEV_IN.unpack_from(data)[0]


def encode_daxdev_out(reply: DaxdevReply, gen: Abi) -> bytes:
    """`fuse_daxdev_out`; pull-devt puts the dev_t in reserved3, others leave it 0."""
    if not 0 <= reply.index <= 0xFFFF:
        raise WireError.bad(f"index {reply.index} does not fit the u16 wire field")
    devt = reply.devt if gen.registration == Registration.PULL_DEVT else 0
    return DAXDEV_OUT.pack(reply.index, 0, 0, devt, 0, reply.name[:NAME_MAX - 1])


def decode_daxdev_out(data: bytes, gen: Abi) -> DaxdevReply:
    if len(data) < DAXDEV_OUT.size:
        raise WireError.bad(f"GET_DAXDEV reply of {len(data)} bytes, expected {DAXDEV_OUT.size}")
    index, _, _, devt, _, name = DAXDEV_OUT.unpack_from(data)
    return DaxdevReply(index, name.split(b"\0", 1)[0], devt if gen.registration == Registration.PULL_DEVT else 0)


def encode_backing_map(m: BackingMap, gen: Abi) -> bytes:
    """push-fd carries the daxdev index in the former padding; backing-id leaves it 0."""
    return BACKING_MAP.pack(m.fd, m.flags, m.index if gen.registration == Registration.PUSH_FD else 0)


def decode_backing_map(data: bytes) -> BackingMap:
    if len(data) < BACKING_MAP.size:
        raise WireError.bad(f"backing map of {len(data)} bytes")
    return BackingMap(*BACKING_MAP.unpack_from(data))
