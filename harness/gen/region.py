"""Region overlays: fuzz bytes laid over one named region (superblock, log header) of a valid image.

The rest of the image stays valid, so a target that fuzzes 200 bytes exercises the superblock
checks and then everything downstream of them. Byte 0 of the input chooses the mode: bit 0 set
means reseal the region's CRC (fix-all), clear means leave it as the bytes say (raw). Bytes the
input does not cover keep the base image's values, so short inputs are small edits.
"""
from __future__ import annotations

import uuid
from functools import lru_cache

from harness.famfs import layout as L
from harness.famfs.ids import Uuid
from harness.gen.decode import LogImage
from harness.gen.spec import AddDaxdev, Create, Device, Mkdir, Spec, build

MiB = 1 << 20


def base_spec() -> Spec:
    devs = (Device(Uuid(uuid.UUID(int=0xA0).bytes), 16 * MiB), Device(Uuid(uuid.UUID(int=0xB1).bytes), 8 * MiB))
    return Spec(devs, (AddDaxdev(1), Mkdir("d"), Create("d/f", 3 * MiB), Create("g", 2 * MiB, devindex=1),
                       Create("s", 4 * MiB + 5, strips=(0, 1))))


@lru_cache(maxsize=1)
def _base() -> tuple[bytes, int]:
    built = build(base_spec(), data="stamp")
    sb = L.Superblock.decode(built.primary)
    return bytes(built.primary[: sb.log_offset + sb.log_len]), len(built.primary)


def base_image() -> LogImage:
    """A fresh copy of the base image: primary bytes through the log end, and its size."""
    head, size = _base()
    return LogImage(bytearray(head), size)


def overlay(region: str, data: bytes) -> LogImage:
    """The base image with `data[1:]` over `region` ("superblock" or "log_header")."""
    image = base_image()
    dev = image.device
    reseal = bool(data[:1]) and data[0] & 1
    body = data[1:]
    if region == "superblock":
        at, size = 0, L.SUPERBLOCK.size
    else:
        at, size = L.Superblock.decode(dev).log_offset, L.HEADER_SIZE
    dev[at:at + min(size, len(body))] = body[:size]
    if reseal:
        (L.SUPERBLOCK if region == "superblock" else L.LOG_HEADER).seal(dev, at)
    if region == "superblock":
        return LogImage(dev, L.Superblock.decode(dev).dd_size)
    return image
