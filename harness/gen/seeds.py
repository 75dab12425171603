"""Seed inputs for the corpora: meaningful starting points, in each target's input format."""
from __future__ import annotations

import gzip
import os
import random
from typing import Iterator

from harness.famfs import layout as L
from harness.famfs.ids import Uuid
from harness.gen.corrupt import set_field
from harness.gen.decode import encode_image
from harness.gen.region import _base, base_spec
from harness.gen.spec import AddDaxdev, Create, Device, Mkdir, Op, Spec, build

MiB = 1 << 20


def _specs() -> Iterator[Spec]:
    yield base_spec()
    rng = random.Random(20261124)
    for n in (1, 2, 3, 4):
        devs = tuple(Device(Uuid(rng.randbytes(16)), 16 * MiB if i else 24 * MiB) for i in range(n))
        ops: list[Op] = [AddDaxdev(i) for i in range(1, n)]
        ops += [Mkdir("a"), Mkdir("a/b", 0o700, 1000, 1000)]
        ops += [Create(f"a/f{i}", rng.choice([0, 4096, 2 * MiB + 1, 3 * MiB]), devindex=i % n) for i in range(n)]
        if n > 1:
            ops.append(Create("a/b/striped", 4 * MiB + 3, strips=tuple(range(n))))
        yield Spec(devs, tuple(ops))


def golden_compact() -> bytes | None:
    """The golden image (tests/golden) in compact form, if this checkout has it."""
    from harness import project
    path = os.path.join(project.root(), "tests", "golden", "famfs-5d0919f", "primary-head.img.gz")
    if not os.path.exists(path):
        return None
    return encode_image(bytearray(gzip.decompress(open(path, "rb").read())))


def compact_images() -> Iterator[bytes]:
    for spec in _specs():
        yield encode_image(build(spec, data="stamp").primary)
    g = golden_compact()
    if g is not None:
        yield g


def superblocks() -> Iterator[bytes]:
    head, _ = _base()
    sb = head[:L.SUPERBLOCK.size]
    yield b"\x01" + sb
    yield b"\x00" + sb
    dev = bytearray(head)
    set_field(dev, "superblock", "flags", L.SECONDARY_SB, reseal=False)
    yield b"\x01" + bytes(dev[:L.SUPERBLOCK.size])


def headers() -> Iterator[bytes]:
    head, _ = _base()
    off = L.Superblock.decode(head).log_offset
    h = head[off:off + L.HEADER_SIZE]
    yield b"\x01" + h
    yield b"\x00" + h


def choice_streams() -> Iterator[bytes]:
    rng = random.Random(7)
    yield b""
    for n in (16, 64, 128, 256, 256, 512):
        yield rng.randbytes(n)


def shm_workloads() -> Iterator[bytes]:
    """shm_states workloads (cases.shm's stream: op count, then kind and client per op):
    one mkdir, one file, two appends, all with fresh clients. Running clients, ADD_DAXDEV, mkfs
    again and a full log are not seeded: the planted-bug tests measure the search for them."""
    yield b""                                     # mkfs, one mkdir
    yield bytes([0, 1, 0, 1, 0])                  # mkfs, one file of two pages
    yield bytes([1, 0, 0, 0, 0, 1, 0, 6, 0])      # mkfs, mkdir, a file of three pages


def remade_workloads() -> Iterator[bytes]:
    """remade_fs inputs: files, cached fmaps, same device / log, overwrite, then the actions."""
    yield bytes(12)
    yield bytes([1, 3, 1, 1, 1, 0, 1, 2, 3, 4, 0, 0])
    yield bytes([3, 15, 0, 0, 0, 4, 3, 2, 1, 0, 4, 4])


def fmap_replies() -> Iterator[bytes]:
    """GET_FMAP replies of the seed specs' files, prefixed by the ABI-choosing byte."""
    from harness.famfs import wire
    from harness.famfs.replay import replay
    for spec in list(_specs())[:3]:
        result = replay(build(spec, data="stamp").primary)
        for f in result.namespace.files.values():
            for k, gen in enumerate(wire.ABIS.values()):
                yield bytes([k]) + wire.encode_fmap(wire.fmap_from_file(f, gen), gen)


def external_inputs() -> Iterator[bytes]:
    """Seeds of the external target: compact images (byte 0 even), choice streams (odd)."""
    for img in compact_images():
        yield b"\x00" + img
    for stream in choice_streams():
        yield b"\x01" + stream
