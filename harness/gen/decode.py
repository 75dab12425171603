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

import struct
import uuid as _uuid
from dataclasses import dataclass

from harness.famfs import layout as L
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


def log_image(data: bytes) -> LogImage | None:
    """Decode a compact image; None if the superblock's log region cannot be placed in a buffer
    of at most MAX_DEVICE_BYTES (that is a different bug class: checked by `superblock`)."""
    if len(data) < L.SUPERBLOCK.size:
        return None
    sb = L.Superblock.decode(data)
    end = sb.log_offset + sb.log_len
    if sb.log_offset < L.SUPERBLOCK.size or end > MAX_DEVICE_BYTES:
        return None
    device = bytearray(end)
    device[:L.SUPERBLOCK.size] = data[:L.SUPERBLOCK.size]
    log = data[L.SUPERBLOCK.size:L.SUPERBLOCK.size + sb.log_len]
    device[sb.log_offset:sb.log_offset + len(log)] = log
    return LogImage(device, sb.dd_size)


class Choices:
    """A bounded choice stream over bytes, in the spirit of FuzzedDataProvider: integers in a
    range, booleans, picks. Running out of bytes yields the smallest choice (0), never an error."""

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        span = hi - lo
        if span <= 0:
            return lo
        nbytes = (span.bit_length() + 7) // 8
        raw = self.data[self.at:self.at + nbytes]
        self.at += nbytes
        return lo + int.from_bytes(raw.ljust(nbytes, b"\0"), "little") % (span + 1)

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def pick(self, options: "list | tuple"):  # type: ignore[no-untyped-def]
        return options[self.int(0, len(options) - 1)]

    def bytes(self, n: int) -> bytes:
        raw = self.data[self.at:self.at + n]
        self.at += n
        return raw.ljust(n, b"\0")

    @property
    def exhausted(self) -> bool:
        return self.at >= len(self.data)


SIZES = (0, 1, 4096, 2 * MiB, 2 * MiB + 1, 3 * MiB, 5 * MiB + 7)
DEV_SIZES = (16 * MiB, 24 * MiB, 32 * MiB)
MODES = (0o644, 0o600, 0o755, 0o444, 0o700)


def spec(c: Choices, *, min_devices: int = 1, max_devices: int = 4, max_ops: int = 16,
         dev_sizes: tuple[int, ...] = DEV_SIZES, primary_size: int = 32 * MiB) -> Spec:
    """A well-formed spec from a choice stream (every stream decodes to some spec)."""
    n = c.int(min_devices, max_devices)
    devs = tuple(Device(_uuid.UUID(int=(c.int(1, 255) << 64) | (k + 1)).bytes,
                        primary_size if k == 0 else c.pick(dev_sizes)) for k in range(n))
    pending = list(range(1, n))
    order = []
    while pending:
        order.append(pending.pop(c.int(0, len(pending) - 1)))
    defined, dirs = 1, [""]
    ops: list[Op] = []
    for _ in range(c.int(0, max_ops)):
        kind = c.int(0, 5)
        if kind == 0 and order:
            ops.append(AddDaxdev(order.pop(0)))
            defined += 1
            continue
        parent = c.pick(dirs)
        path = f"{parent}/{'abcxyz'[c.int(0, 5)]}{c.int(0, 3)}".lstrip("/")
        if kind == 1:
            ops.append(Mkdir(path, c.pick(MODES), c.pick((0, 1000)), c.pick((0, 1000))))
            dirs.append(path)
        elif kind == 2 and defined > 1:
            k = c.int(1, min(4, defined))
            ops.append(Create(path, c.pick(SIZES), strips=tuple(c.int(0, defined - 1) for _ in range(k))))
        else:
            ops.append(Create(path, c.pick(SIZES), c.pick(MODES), devindex=c.int(0, defined - 1)))
    ops += [AddDaxdev(p) for p in order]
    return Spec(devs, tuple(ops))


def corruption_seed(c: Choices) -> int:
    return struct.unpack("<Q", c.bytes(8))[0]
