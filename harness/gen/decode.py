"""Byte decoders: fuzz input bytes -> images and specs. They never raise; None means "unusable".

Two input formats, both version-independent (a corpus file stays meaningful across releases):

* **compact image** (`log_image` / `encode_image`): the 200-byte superblock, then the log region
  from its start through the last used entry. The decoder places the superblock at offset 0 and
  the log at the superblock's `log_offset` in a zeroed device buffer that ends where the log
  ends; the device's size for extent bounds is the superblock's `dd_size`. Raw-byte targets
  mutate these bytes directly, so a flipped `log_offset` or `next_index` reaches replay as is.
* **structured** (`spec`): bytes drive a choice stream (Atheris's `FuzzedDataProvider` when
  Atheris is importable, else a small compatible reader) that picks devices, ADD_DAXDEV order,
  dirs and files, then a corruption family, operator seed and mode. Coverage guidance then acts
  on structure, not only on raw bytes.
"""
from __future__ import annotations

import builtins
import struct
import uuid as _uuid
from dataclasses import dataclass
from typing import Any

from harness.famfs import layout as L
from harness.famfs.ids import Uuid
from harness.gen.spec import AddDaxdev, Create, Device, Mkdir, Op, Spec

MiB = 1 << 20
MAX_DEVICE_BYTES = 64 * MiB       # cap on the buffer a compact image may ask for (log end)


@dataclass(frozen=True, slots=True)
class LogImage:
    """A decoded compact image: the primary's bytes through the log's end, and its real size."""

    device: bytearray
    size: int


def head_end(device: bytes | bytearray | memoryview) -> int:
    """Where the primary's superblock says its log ends (at least 4 KiB), clipped to the device:
    the bytes a replay, a model verdict or an external program needs of it."""
    sb = L.Superblock.decode(device)
    return min(len(device), max(4096, sb.log_offset + sb.log_len))


def encode_image(device: bytes | bytearray | memoryview) -> bytes:
    """Compact form of a primary device: superblock + log through the last used entry."""
    sb = L.Superblock.decode(device)
    head = L.LogHeader.decode(device, sb.log_offset)
    used = min(head.next_index, L.log_slots(sb.log_len))
    end = sb.log_offset + L.HEADER_SIZE + L.ENTRY_SIZE * used
    return bytes(device[:L.SUPERBLOCK.size]) + bytes(device[sb.log_offset:end])


def log_image(data: bytes, *, reuse: bool = False) -> LogImage | None:
    """Decode a compact image; None if the superblock's log region cannot be placed in a buffer
    of at most MAX_DEVICE_BYTES (that is a different bug class: checked by `superblock`).
    With `reuse` the device is a scratch buffer kept per size and valid until the next call with
    `reuse` (only what the previous image wrote is zeroed): a fresh 10 MiB buffer per input was
    a third of the log_replay target's time. Callers that keep images must not pass it. Only the
    `SCRATCH_SIZES` sizes used last are kept: mutated superblocks ask for ever new sizes, and one
    buffer kept per size grew a fuzzing process by about 300 MiB a second."""
    if len(data) < L.SUPERBLOCK.size:
        return None
    sb = L.Superblock.decode(data)
    end = sb.log_offset + sb.log_len
    if sb.log_offset < L.SUPERBLOCK.size or end > MAX_DEVICE_BYTES:
        return None
    log = data[L.SUPERBLOCK.size:L.SUPERBLOCK.size + sb.log_len]
    if reuse:
        device, written = _SCRATCH.pop(end) if end in _SCRATCH else (bytearray(end), [])
        for lo, hi in written:
            device[lo:hi] = bytes(hi - lo)
        _SCRATCH[end] = (device, [(0, L.SUPERBLOCK.size), (sb.log_offset, sb.log_offset + len(log))])
        while len(_SCRATCH) > SCRATCH_SIZES:                  # the least recently used size goes
            del _SCRATCH[next(iter(_SCRATCH))]
    else:
        device = bytearray(end)
    device[:L.SUPERBLOCK.size] = data[:L.SUPERBLOCK.size]
    device[sb.log_offset:sb.log_offset + len(log)] = log
    return LogImage(device, sb.dd_size)


SCRATCH_SIZES = 4
_SCRATCH: dict[int, tuple[bytearray, list[tuple[int, int]]]] = {}   # size -> (buffer, ranges written), LRU order


@dataclass(frozen=True, slots=True)
class Draw:
    """One recorded draw of a `Choices` stream: its bytes [start, start+nbytes), its range, its
    label in the decoder, and (for an escapable draw) how many top byte values select one of the
    decoder's extended values and how many extra bytes such a value then reads."""

    start: int
    nbytes: int
    lo: int
    hi: int
    label: str = ""
    escape: int = 0
    extra: int = 0


class Choices:
    """A bounded choice stream over bytes, in the spirit of FuzzedDataProvider: integers in a
    range, booleans, picks. Running out of bytes yields the smallest choice (0), never an error.
    With `record=True` every draw is kept in `trace` (the custom mutator's map of the stream)."""

    def __init__(self, data: bytes, *, record: bool = False):
        self.data = data
        self.at = 0
        self.trace: list[Draw] | None = [] if record else None

    def int(self, lo: int, hi: int, label: str = "") -> int:
        """An integer in [lo, hi]."""
        span = hi - lo
        if span <= 0:
            return lo
        nbytes = (span.bit_length() + 7) // 8
        raw = self.data[self.at:self.at + nbytes]
        if self.trace is not None:
            self.trace.append(Draw(self.at, nbytes, lo, hi, label))
        self.at += nbytes
        return lo + int.from_bytes(raw.ljust(nbytes, b"\0"), "little") % (span + 1)

    # (below, `builtins.` names the types the methods `int`, `bool` and `bytes` shadow in this class)
    def escapable(self, lo: builtins.int, hi: builtins.int, label: str, escape: builtins.int,
                  extra: builtins.int = 0) -> tuple[builtins.int, builtins.int | None]:
        """A one-byte draw in [lo, hi] (hi - lo < 256 - escape) whose top `escape` byte values
        select extended value k instead: returns (value, None) or (lo, k). Bytes below the escape
        range decode exactly as `int(lo, hi)` does, so older streams keep their meaning."""
        raw = self.data[self.at] if self.at < len(self.data) else 0
        if self.trace is not None:
            self.trace.append(Draw(self.at, 1, lo, hi, label, escape, extra))
        self.at += 1
        if raw >= 256 - escape:
            return lo, raw - (256 - escape)
        return lo + raw % (hi - lo + 1), None

    def mark(self, label: str) -> None:
        """Record a position (no bytes read): the start of an operation, for the mutator."""
        if self.trace is not None:
            self.trace.append(Draw(self.at, 0, 0, 0, label))

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def pick(self, options: list[Any] | tuple[Any, ...], label: str = "") -> Any:
        return options[self.int(0, len(options) - 1, label)]

    def bytes(self, n: builtins.int) -> builtins.bytes:
        raw = self.data[self.at:self.at + n]
        if self.trace is not None:
            self.trace.append(Draw(self.at, n, 0, (1 << (8 * n)) - 1, "bytes"))
        self.at += n
        return raw.ljust(n, b"\0")

    @property
    def exhausted(self) -> builtins.bool:
        return self.at >= len(self.data)


SIZES = (0, 1, 4096, 2 * MiB, 2 * MiB + 1, 3 * MiB, 5 * MiB + 7)
DEV_SIZES = (16 * MiB, 24 * MiB, 32 * MiB)
MODES = (0o644, 0o600, 0o755, 0o444, 0o700)

# Extended values, reached through the top byte values of an escapable draw (`Choices.escapable`):
# counts at their limits, sizes off the chunk, near-miss names. Older streams rarely hit them.
MANY_DEVICES = ((5, 6, 8), (16, 23, 24))            # 24: the kernel table's last slot (pull-* ABIs)
SMALL_DEV = 6 * MiB                                  # secondaries past the fourth: 2 allocation units
CHUNK_DELTAS = (1, -1, 4095, 4096, 4097, MiB, -4096)
EDGE_SIZES = (15 * 2 * MiB + 1, 16 * 2 * MiB, 16 * 2 * MiB - 1, 1 << 32, (1 << 32) + 1, 7 * 2 * MiB + 3)
LONG_NAMES = ("n" * 40, "m" * 70, "l" * 78, "k" * 79)
ODD_NAMES = (".metax", "a..b", "..x", "x.", "x..", "...", "-", " ", "\u00e9", "meta", ".m")
STRIP_COUNTS = (5, 8, 15, 16)
CHUNKS = (2 * MiB, 4 * MiB, 8 * MiB)


def _name(c: Choices, parent: str) -> str:
    """A name under `parent`: old shape 'a0'..'z3', or (escaped) a long or odd one; the full path
    is kept within famfs's 79 usable relpath bytes so the builder accepts it."""
    letter, ext = c.escapable(0, 5, "name", 2, 1)
    if ext is None:
        return f"{'abcxyz'[letter]}{c.int(0, 3, 'name.n')}"
    if ext == 0:
        room = 79 - len(parent.encode()) - (1 if parent else 0)
        return c.pick(LONG_NAMES, "name.long")[:max(1, room)]
    return c.pick(ODD_NAMES, "name.odd")


def _size(c: Choices) -> int:
    """A file size: the old table, or (escaped) a chunk multiple plus a delta, or an edge size."""
    k, ext = c.escapable(0, len(SIZES) - 1, "size", 2, 2)
    if ext is None:
        return SIZES[k]
    if ext == 0:
        return max(0, c.int(0, 16, "size.chunks") * 2 * MiB + c.pick(CHUNK_DELTAS, "size.delta"))
    return c.pick(EDGE_SIZES, "size.edge")


def spec(c: Choices, *, min_devices: int = 1, max_devices: int = 4, max_ops: int = 16,
         dev_sizes: tuple[int, ...] = DEV_SIZES, primary_size: int = 32 * MiB) -> Spec:
    """A well-formed spec from a choice stream (every stream decodes to some spec).

    Besides the old shapes (1-4 devices, names like 'a0', a size table, 1-4 strips) the escaped
    byte values give: 5-24 devices (up to a full kernel table: a file on its last slot) when the
    caller allows the default 4 or more (then every ADD_DAXDEV comes first and a file's index is
    mostly a boundary one: the last slot, the one before it, or 0); long (up to 79-byte) and odd
    names; sizes that are not multiples of the chunk and edge sizes; files striped over 5-16
    strips with 2-8 MiB chunks;
    and conflicting ops (an existing path again, a child of a file), which the builder cannot
    place and skips: `gen.corrupt`'s `conflicting_entry` writes those into the log instead."""
    n, many = c.escapable(min_devices, max_devices, "ndev", 2 if max_devices >= 4 else 0, 1)
    if many is not None:
        n = max(min_devices, c.pick(MANY_DEVICES[many], "ndev.many"))
    devs = tuple(Device(Uuid(_uuid.UUID(int=(c.int(1, 255, "uuid") << 64) | (k + 1)).bytes),
                        primary_size if k == 0 else c.pick(dev_sizes, "devsize") if k < 4 else SMALL_DEV)
                 for k in range(n))
    pending = list(range(1, n))
    order = []
    while pending:
        order.append(pending.pop(c.int(0, len(pending) - 1, "order")))
    defined, dirs = 1, [""]
    paths: list[str] = []
    ops: list[Op] = []
    if many is not None:                 # a table at its limit: every device added first, files after
        ops += [AddDaxdev(p) for p in order]
        defined, order = n, []
    for _ in range(c.int(0, max_ops, "nops")):
        c.mark("op")
        kind, ext = c.escapable(0, 5, "kind", 3, 2)
        if ext is not None:
            op = _extended_op(c, ext, dirs, paths, defined)
            if op is not None:
                ops.append(op)
            continue
        if kind == 0 and order:
            ops.append(AddDaxdev(order.pop(0)))
            defined += 1
            continue
        parent = c.pick(dirs, "parent")
        path = f"{parent}/{_name(c, parent)}".lstrip("/")
        paths.append(path)
        if kind == 1:
            ops.append(Mkdir(path, c.pick(MODES, "mode"), c.pick((0, 1000), "uid"), c.pick((0, 1000), "gid")))
            dirs.append(path)
        elif kind == 2 and defined > 1:
            k = c.int(1, min(4, defined), "nstrips")
            ops.append(Create(path, _size(c), strips=tuple(c.int(0, defined - 1, "strip") for _ in range(k))))
        else:
            size, mode = _size(c), c.pick(MODES, "mode")
            if many is None:
                index = c.int(0, defined - 1, "devindex")
            else:                        # a full table: the boundary slots first (last, one before, 0)
                edge = c.int(0, 3, "devindex.edge")
                index = (defined - 1, defined - 2, 0)[edge] if edge < 3 else c.int(0, defined - 1, "devindex")
            ops.append(Create(path, size, mode, devindex=index))
    ops += [AddDaxdev(p) for p in order]
    return Spec(devs, tuple(ops))


def _extended_op(c: Choices, ext: int, dirs: list[str], paths: list[str], defined: int) -> Op | None:
    """Escaped op kinds: 0 a file striped over 5-16 strips with a 2-8 MiB chunk and a size off
    the chunk; 1 a file on the last defined index; 2 a conflicting op (an existing path again, or
    a child of an existing file), which the builder skips."""
    if ext == 0:
        n = c.pick(STRIP_COUNTS, "wide.nstrips")
        first = c.int(0, defined - 1, "wide.first")
        return Create(f"w{len(paths)}", _size(c), strips=tuple((first + k) % defined for k in range(n)),
                      chunk=c.pick(CHUNKS, "wide.chunk"))
    if ext == 1:
        path = f"{c.pick(dirs, 'parent')}/last{len(paths)}".lstrip("/")
        paths.append(path)
        return Create(path, _size(c), devindex=defined - 1)
    if not paths:
        return None
    old = c.pick(paths, "conflict.path")
    if c.bool():
        return Mkdir(old)
    return Create(f"{old}/under", 4096)


def corruption_seed(c: Choices) -> int:
    return struct.unpack("<Q", c.bytes(8))[0]
