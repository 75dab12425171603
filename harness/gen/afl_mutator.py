"""AFL++ custom mutator (Python interface) for programs that read a famfs device image.

afl-fuzz loads this module itself (`AFL_PYTHON_MODULE=harness.gen.afl_mutator`, `PYTHONPATH` at
the repository root) in its embedded interpreter, which has no virtualenv: this module and what
it imports (`harness.gen.mutate`, `harness.gen.decode`, `harness.famfs.layout`) use the standard
library only (tests/cases/external checks that with the system Python).

AFL's queue holds **compact images** (the superblock, then the log from its start through the
last used entry: `gen.decode`'s format, the one the external target's raw inputs use), so queue
entries stay small and every operator of `gen.mutate` applies:

* `fuzz` decodes the image into `mutate.Log`, applies 1..4 of the named structured operators
  (field boundaries, entry swaps / duplicates / inserts, interleaved strips and chunks, near-miss
  names, daxdev table edits, payload bytes), sometimes splices an entry of AFL's second input
  (`add_buf`) in, then reseals the CRCs (nine times in ten; the tenth stays stale on purpose, the
  CRC checks are targets too) and re-encodes;
* inputs that do not decode, and a tenth of the others, get byte mutation (`mutate.byte_mutate`:
  bit flips, interesting values, splices) instead: the lane runs with AFL_CUSTOM_MUTATOR_ONLY,
  because afl-fuzz 4.04c does not call post_process on its own stages' outputs, so a havoc input
  would run against the previous input's device;
* `fuzz` and `post_process` (the dry run, calibration) write the file the program reads
  (`write_device`, at FAMFS_AFL_DEVICE, the path the command names instead of `@@`): superblock
  at 0 and the log at the superblock's `log_offset`, zeros (a hole) through the log's end; bytes
  that place no log go as they are.
"""
from __future__ import annotations

import hashlib
import os
import random
import re

from harness.famfs import layout as L
from harness.gen import decode, mutate

_RNG = random.Random(0)
_LAST: list[str] = []
_KEEP = bytearray()
_DEVICE = os.environ.get("FAMFS_AFL_DEVICE", "")
_CRASHES = os.environ.get("FAMFS_AFL_CRASHES", "")   # where every distinct crashing input goes
_PREV: bytes | None = None                            # the input whose device is on disk now
_SEEN: dict[str, int] = {}
_EXECS = [0]                                          # executions prepared (fuzz + post_process calls)
PER_REPORT = 3                                        # inputs kept per distinct sanitizer report
_FRAME = re.compile(r"#(\d+) 0x[0-9a-f]+ (?:in \S+ )?\(?([^()\s]*\+0x[0-9a-f]+|\S+:\d+)")


def report_key(text: str) -> str:
    """A sanitizer report's identity: its bug type and its first six frames as module+offset (or
    file:line), addresses left out."""
    m = re.search(r"ERROR: \w+: ([\w-]+)", text)
    frames = [f"{f.group(2)}" for f in _FRAME.finditer(text) if int(f.group(1)) < 6]
    return hashlib.sha1(((m.group(1) if m else "?") + "|" + "|".join(frames)).encode()).hexdigest()[:12]


def _harvest() -> None:
    """After an execution: if the sanitizer left a report (ASAN_OPTIONS log_path, set by the AFL
    lane), keep the input that caused it (at most PER_REPORT per distinct report). afl-fuzz keeps
    only crashes with new coverage, which hides a second bug on a path a first one already
    crashed on; our re-run then names each."""
    reports = os.path.join(_CRASHES, ".reports")
    try:
        names = os.listdir(reports)
    except OSError:
        return
    for name in names:
        path = os.path.join(reports, name)
        try:
            with open(path, errors="replace") as f:
                text = f.read()
            os.unlink(path)
        except OSError:
            continue
        if _PREV is None:
            continue
        key = report_key(text)
        n = _SEEN.get(key, 0)
        if n < PER_REPORT:
            _SEEN[key] = n + 1
            with open(os.path.join(_CRASHES, f"{key}-{n},execs:{_EXECS[0]}"), "wb") as out:
                out.write(_PREV)
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


BYTES = 0.1                         # share of inputs given byte mutation instead (AFL's havoc does not run)
# REBASE: afl-fuzz favours the smallest queue entry per edge, so on a small program it spends its
# time on images with no or one entry, where most operators have nothing to edit; half the time
# an input with fewer entries than AFL's second input (add_buf, a random queue entry) is swapped
# for that one.


_QUEUE = os.environ.get("FAMFS_AFL_QUEUE", "")       # afl-fuzz's queue directory (the lane sets it)
_POOL: list[bytes] = []
_POOLED: set[str] = set()
_CALLS = [0]
UNIFORM = 0.5                                         # share of inputs whose base is drawn uniformly


def _pool_pick(rng: random.Random) -> bytes | None:
    """A queue entry drawn uniformly (the queue is re-read every 256 calls). afl-fuzz favours the
    smallest entry per edge, so on a small program it spends nearly all its time on one or two
    images with no entries to edit; half of our inputs start from any entry instead."""
    if not _QUEUE:
        return None
    if _CALLS[0] % 256 == 0:
        try:
            for name in os.listdir(_QUEUE):
                if name.startswith("id:") and name not in _POOLED:
                    _POOLED.add(name)
                    with open(os.path.join(_QUEUE, name), "rb") as f:
                        _POOL.append(f.read())
        except OSError:
            pass
    _CALLS[0] += 1
    return rng.choice(_POOL) if _POOL else None


def mutate_image(buf: bytes, add: bytes | None, max_size: int, rng: random.Random) -> tuple[bytes, list[str]]:
    """One structured mutation of a compact image and what was done; byte mutation when it does
    not decode, and for a tenth of the inputs."""
    if rng.random() < UNIFORM:
        buf = _pool_pick(rng) or buf
    log = mutate.Log.decode(buf)
    other = mutate.Log.decode(add) if add else None
    done: list[str] = []
    if other is not None and other.entries and (log is None or len(log.entries) < len(other.entries)) \
            and rng.random() < 0.5:
        log, other = other, log                          # see REBASE
        done.append("rebase: mutate the richer second input")
    if log is None or rng.random() < BYTES:
        return mutate.byte_mutate(buf, max_size, rng), ["bytes"]
    other = other if rng.random() < 0.15 else None
    if other is not None and other.entries:
        e = bytearray(rng.choice(other.entries))
        log.entries.insert(rng.randrange(len(log.entries) + 1), e)
        log.moved = True
        done.append("splice: an entry of another queue image")
    if rng.random() < GEOMETRY:
        what = interleave_geometry(log, rng)
        if what:
            done.append(what)
    done += mutate.mutate_log(log, rng)
    return log.encode(max_size), done


GEOMETRY = 0.2                      # share of structured inputs that also get `interleave_geometry`


def interleave_geometry(log: mutate.Log, rng: random.Random) -> str | None:
    """An interleaved file entry gets another strip count (1..16) or chunk size (1..16 allocation
    units): every value, not only the boundaries `gen.mutate` tries, since a reader may treat one
    (strips, chunk) combination apart from the others."""
    ks = [k for k in log.of_type(mutate.FILE) if log.file_struct(k) == "interleave_meta"]
    if not ks:
        return None
    k = rng.choice(ks)
    if rng.random() < 0.5:
        n = rng.randint(1, 16)
        log.set("interleave_meta", "nstrips", n, k)
        return f"interleave_geometry: entry {k} nstrips {n}"
    units = rng.randint(1, 16)
    log.set("interleave_meta", "chunk_size", units * log.alloc_unit, k)
    return f"interleave_geometry: entry {k} chunk {units} units"


# -- the AFL++ Python custom mutator interface ------------------------------------------------------


def init(seed: int) -> None:
    _RNG.seed(seed)


def _count_and_harvest() -> None:
    """One more execution on its way; pick up the sanitizer reports of the last ones (never raises:
    a raise would end afl-fuzz)."""
    _EXECS[0] += 1
    if _CRASHES:
        try:
            _harvest()
        except Exception:                                # noqa: BLE001
            pass


def fuzz_count(buf: bytearray) -> int:
    return FUZZ_COUNT


def fuzz(buf: bytearray, add_buf: bytearray | None, max_size: int) -> bytearray:
    """One mutation; its device is written at once (afl-fuzz 4.04c runs the custom stage's output
    without calling post_process)."""
    global _LAST, _KEEP, _PREV
    _count_and_harvest()
    try:
        out, _LAST = mutate_image(bytes(buf), bytes(add_buf) if add_buf else None, max_size, _RNG)
    except Exception:                                    # noqa: BLE001 - a raise would end afl-fuzz
        out, _LAST = mutate.byte_mutate(bytes(buf), max_size, _RNG), ["bytes"]
    _KEEP = bytearray(out[:max_size])
    if _DEVICE:
        try:
            write_device(_DEVICE, _KEEP)
            _PREV = bytes(_KEEP)
        except OSError:
            _PREV = None
    return _KEEP


def describe(max_description_length: int) -> str:
    """The operators of the last mutation (AFL puts it in the queue file's name)."""
    try:
        what = ",".join(str(d).split(":", 1)[0] for d in _LAST) or "famfs"
        return "".join(ch if ch.isalnum() or ch in "_-," else "_" for ch in what)[:max_description_length]
    except Exception:                                    # noqa: BLE001 - a raise would end afl-fuzz
        return "famfs"


def post_process(buf: bytearray) -> bytearray:
    """Before each execution: write the program's file of `buf` to FAMFS_AFL_DEVICE (the path the
    command names) and hand `buf` back unchanged, so AFL's queue and crashes stay compact images.
    (afl-fuzz 4.04c saves post_process's output in the queue and clips it at 1 MiB: the expanded
    device itself, 2 MiB and more, cannot go through AFL's input file.) Without the variable the
    expanded device is returned. The result stays referenced here until the next call: afl-fuzz
    may read it after dropping its own reference."""
    global _KEEP, _PREV
    _count_and_harvest()
    try:
        if _DEVICE:
            write_device(_DEVICE, buf)
            _KEEP = buf
            _PREV = bytes(buf)
        else:
            _KEEP = expand(buf)
    except Exception:                                    # noqa: BLE001
        _KEEP = buf
    return _KEEP


def deinit() -> None:
    pass
