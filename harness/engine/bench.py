"""Benchmarks reported by `famfs-fuzz bench`: numbers measured in one run, ratios within that run.

Measured now: replay of a full 8 MiB log (15,420 entries: directories, simple and interleaved
files over three daxdevs, ADD_DAXDEV) against just CRC-and-seqnum checking the same entries, the
floor any replay has to pay. Each figure is the best of `repeat` timings (least disturbed by the
other tenants of a shared machine).
"""
from __future__ import annotations

import struct
import time
from dataclasses import asdict, dataclass
from typing import Callable

from harness.famfs.image import Image, Interleave
from harness.famfs.layout import ENTRY_SIZE, HEADER_SIZE, LOG_LEN, crc32, log_slots
from harness.famfs.replay import replay

_U64 = struct.Struct("<Q")


def full_log_image() -> tuple[bytearray, int]:
    """A primary whose 8 MiB log is full: every slot used. Returns (device, entries)."""
    au = 4096
    size = 256 << 20
    devices = [bytearray(size), bytearray(32 << 20), bytearray(32 << 20)]
    image = Image.mkfs(devices, log_len=LOG_LEN, alloc_unit=au)
    slots = log_slots(LOG_LEN)
    n = image.log.next_index
    first, d = n, 0
    while n < slots:
        k = (n - first) % 8
        if k == 0:
            image.mkdir(f"d{d}")
            d += 1
        elif k == 5:
            image.create(f"d{d - 1}/s{n}", 3 * au, interleave=Interleave(3, au, (0, 1, 2)), data=b"")
        else:
            image.create(f"d{d - 1}/f{n}", au, devindex=0, data=b"")
        n = image.log.next_index
    return devices[0], slots


def crc_only(device: bytearray, log_offset: int, entries: int) -> int:
    """Check CRC and seqnum of every entry, nothing else: the floor under any replay."""
    log = memoryview(device)[log_offset:log_offset + LOG_LEN]
    good = 0
    for i in range(entries):
        at = HEADER_SIZE + ENTRY_SIZE * i
        if crc32(log[at:at + 536]) == _U64.unpack_from(log, at + 536)[0] and _U64.unpack_from(log, at)[0] == i:
            good += 1
    return good


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One bench run's numbers."""

    log_entries: int
    replay_s: float
    crc_only_s: float
    replay_over_crc: float
    replay_entries_per_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run(repeat: int = 5) -> BenchResult:
    device, entries = full_log_image()
    result = replay(device)
    if result.rejections or len(result.namespace.files) + len(result.namespace.dirs) + 2 != entries:
        raise RuntimeError(f"bench image did not replay cleanly: {result.rejections[:3]}")
    log_offset = result.superblock.log_offset
    if crc_only(device, log_offset, entries) != entries:
        raise RuntimeError("bench image has bad CRCs")
    t_replay = _best(lambda: replay(device), repeat)
    t_crc = _best(lambda: crc_only(device, log_offset, entries), repeat)
    return BenchResult(entries, t_replay, t_crc, t_replay / t_crc, entries / t_replay)
