"""AFL++ custom mutator (Python interface) for programs that read a famfs device image.

afl-fuzz loads this module itself (`AFL_PYTHON_MODULE=harness.gen.afl_mutator`, `PYTHONPATH` at
the repository root) in its embedded interpreter, which has no virtualenv: this module and what
it imports (`harness.gen.mutate`, `harness.gen.decode`, `harness.famfs.layout`) use the standard
library only (tests/external checks that with the system Python).

AFL's queue holds **compact images** (the superblock, then the log from its start through the
last used entry: `gen.decode`'s format, the one the external target's raw inputs use), so queue
entries stay small and every operator of `gen.mutate` applies:

* `fuzz` decodes the image into `mutate.Log`, applies 1..4 of the named structured operators
  (field boundaries, entry swaps / duplicates / inserts, interleaved strips and chunks, near-miss
  names, daxdev table edits, payload bytes), sometimes splices an entry of AFL's second input
  (`add_buf`) in, then reseals the CRCs (nine times in ten; the tenth stays stale on purpose, the
  CRC checks are targets too) and re-encodes;
* `fuzz_count` returns 0 for an entry that does not decode, so AFL's own havoc mutates it (the
  fall-back); AFL's havoc also runs after our stage on every entry (AFL_CUSTOM_MUTATOR_ONLY unset);
* `post_process` writes the file the program reads (`write_device`, at FAMFS_AFL_DEVICE, the path
  the command names instead of `@@`): superblock at 0 and the log at the superblock's
  `log_offset`, zeros (a hole) through the log's end; bytes that place no log go as they are.
"""
from __future__ import annotations

import os
import random

from harness.famfs import layout as L
from harness.gen import decode, mutate

_RNG = random.Random(0)
_LAST: list[str] = []
_KEEP = bytearray()
_DEVICE = os.environ.get("FAMFS_AFL_DEVICE", "")
FUZZ_COUNT = 64                     # custom mutations per queue entry that decodes


_SB = L.SUPERBLOCK.size
_LOG_OFFSET, _LOG_LEN = (L.field_span("superblock", f) for f in ("log_offset", "log_len"))


def placement(buf: bytes | bytearray) -> tuple[int, list[tuple[int, bytes]]]:
    """Where a compact image's parts go in the program's file: its length and (offset, bytes)
    pieces (the superblock at 0, the log at its `log_offset`, zeros through the log's end), as
    `decode.log_image` places them; bytes whose superblock places no log go as they are."""
    buf = bytes(buf)
    if len(buf) >= _SB:
        lo = int.from_bytes(buf[_LOG_OFFSET[0]:_LOG_OFFSET[0] + _LOG_OFFSET[1]], "little")
        ln = int.from_bytes(buf[_LOG_LEN[0]:_LOG_LEN[0] + _LOG_LEN[1]], "little")
        if lo >= _SB and lo + ln <= decode.MAX_DEVICE_BYTES:
            return lo + ln, [(0, buf[:_SB]), (lo, buf[_SB:_SB + ln])]
    return len(buf), [(0, buf)]


def expand(buf: bytes | bytearray) -> bytearray:
    """The program's file of a compact image (`decode.log_image`'s device), or the bytes
    themselves when the superblock places no log."""
    end, pieces = placement(buf)
    out = bytearray(end)
    for at, piece in pieces:
        out[at:at + len(piece)] = piece
    return out


def write_device(path: str, buf: bytes | bytearray) -> None:
    """Write the program's file of `buf` to `path` in place: only the pieces, the rest a hole
    (tmpfs or sparse), so a 2-10 MiB device costs the bytes of its superblock and log."""
    end, pieces = placement(buf)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        for at, piece in pieces:
            os.pwrite(fd, piece, at)
        os.ftruncate(fd, end)
    finally:
        os.close(fd)


def mutate_image(buf: bytes, add: bytes | None, max_size: int, rng: random.Random) -> tuple[bytes, list[str]]:
    """One structured mutation of a compact image and what was done; byte mutation when it does
    not decode."""
    log = mutate.Log.decode(buf)
    if log is None:
        return mutate.byte_mutate(buf, max_size, rng), ["bytes"]
    done: list[str] = []
    other = mutate.Log.decode(add) if add and rng.random() < 0.15 else None
    if other is not None and other.entries:
        e = bytearray(rng.choice(other.entries))
        log.entries.insert(rng.randrange(len(log.entries) + 1), e)
        log.moved = True
        done.append("splice: an entry of another queue image")
    done += mutate.mutate_log(log, rng)
    return log.encode(max_size), done


# -- the AFL++ Python custom mutator interface ------------------------------------------------------


def init(seed: int) -> None:
    _RNG.seed(seed)


def fuzz_count(buf: bytearray) -> int:
    return FUZZ_COUNT if mutate.Log.decode(bytes(buf)) is not None else 0


def fuzz(buf: bytearray, add_buf: bytearray | None, max_size: int) -> bytearray:
    global _LAST
    try:
        out, _LAST = mutate_image(bytes(buf), bytes(add_buf) if add_buf else None, max_size, _RNG)
    except Exception:                                    # noqa: BLE001 - a raise would end afl-fuzz
        out, _LAST = mutate.byte_mutate(bytes(buf), max_size, _RNG), ["bytes"]
    return bytearray(out[:max_size])


def describe(max_description_length: int) -> str:
    what = ",".join(d.split(":", 1)[0] for d in _LAST) or "famfs"
    return what.replace("/", "_").replace(" ", "_")[:max_description_length]


def post_process(buf: bytearray) -> bytearray:
    """Before each execution: write the program's file of `buf` to FAMFS_AFL_DEVICE (the path the
    command names) and hand `buf` back unchanged, so AFL's queue and crashes stay compact images.
    (afl-fuzz 4.04c saves post_process's output in the queue and clips it at 1 MiB: the expanded
    device itself, 2 MiB and more, cannot go through AFL's input file.) Without the variable the
    expanded device is returned. The result stays referenced here until the next call: afl-fuzz
    may read it after dropping its own reference."""
    global _KEEP
    try:
        if _DEVICE:
            write_device(_DEVICE, buf)
            _KEEP = buf
        else:
            _KEEP = expand(buf)
    except Exception:                                    # noqa: BLE001
        _KEEP = buf
    return _KEEP


def deinit() -> None:
    pass
