"""One fuzz case's checks: replay against the reference model, then reads and lookups on a node.

`check_replay` compares what `replay.py` produced (or the typed error it raised) with the model's
`Verdict` and raises `InvariantViolation` naming the rule at stake:

* the model rejects the image but replay accepted it (or the other way round, or another ID):
  that image-level invariant (SB-VALID, LOG-HEADER, IDX-PRIMARY);
* the first entry where the per-entry rejections differ: the invariant of that rejection;
* where replay stopped (LOG-PREFIX), the index table (IDX-DENSE), the namespace (NS-CONFLICT).

`check_reads` mounts a daemon on one node's view of the devices, reads every file the model
says exists through the kernel side, and compares the bytes with what lies at the model's
extents in the device buffers (DATA), gathered here with the oracle's own arithmetic; every
lookup the probe saw is checked against the model's index table (IDX-LOOKUP, IDX-CLUSTER,
TBL-PUBLISH). Files on a device missing from the node must fail cleanly, with EIO.
"""
from __future__ import annotations

from typing import Any, Sequence

from harness.famfs.errors import FamfsError
from harness.famfs.index import uuid_str
from harness.famfs.invariants import Invariant
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import LookupChecker
from harness.oracle.model import Verdict, observed


def check_replay(expected: Verdict, got: Any) -> None:
    """`got` is a `replay.Replay` or the `FamfsError` replay raised."""
    if isinstance(got, FamfsError):
        if expected.image_error != got.invariant.value:
            inv = Invariant(expected.image_error or got.invariant.value)
            raise InvariantViolation(inv, f"replay raised {got!s}; the model expects "
                                          f"{expected.image_error or 'a usable image'}")
        return
    if expected.image_error:
        raise InvariantViolation(Invariant(expected.image_error),
                                 f"replay accepted an image the model rejects ({expected.image_error})")
    seen = observed(got)
    if seen.rejections != expected.rejections:
        mine, theirs = dict(expected.rejections), dict(seen.rejections)
        entry = min(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        inv = Invariant(mine.get(entry) or theirs[entry])
        raise InvariantViolation(inv, f"entry {entry}: replay says {theirs.get(entry) or 'ok'}, "
                                      f"the model says {mine.get(entry) or 'ok'}")
    if seen.stopped_at != expected.stopped_at:
        raise InvariantViolation(Invariant.LOG_PREFIX, f"replay stopped at {seen.stopped_at}, "
                                                       f"the model at {expected.stopped_at}")
    if seen.table != expected.table:
        raise InvariantViolation(Invariant.IDX_DENSE, f"index table {_uuids(seen.table)} != model's "
                                                      f"{_uuids(expected.table)}")
    if seen.namespace != expected.namespace:
        a, b = dict(seen.namespace), dict(expected.namespace)
        path = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[0]
        raise InvariantViolation(Invariant.NS_CONFLICT, f"{path!r}: replay {a.get(path)}, model {b.get(path)}")


def _uuids(table: tuple[tuple[bytes, int], ...]) -> list[str]:
    return [uuid_str(u)[:8] for u, _ in table]


def gather(size: int, extents: Sequence[tuple[int, int, int]], chunk: int | None,
           bufs: Sequence[Any]) -> bytes | None:
    """The bytes of a file of `size` laid out on `extents` ((devindex, offset, len)), simple
    (chunk None) or striped with `chunk`-byte chunks; None if a device buffer is missing."""
    out = bytearray()
    if chunk is None:
        for dev, off, ln in extents:
            if len(out) >= size:
                break
            if bufs[dev] is None:
                return None
            take = min(ln, size - len(out))
            out += bufs[dev][off:off + take]
        return bytes(out)
    n = len(extents)
    c = 0
    while len(out) < size:
        dev, off, _ = extents[c % n]
        if bufs[dev] is None:
            return None
        start = off + (c // n) * chunk
        take = min(chunk, size - len(out))
        out += bufs[dev][start:start + take]
        c += 1
    return bytes(out)


def check_reads(daemon: Any, expected: Verdict, bufs: Sequence[Any], checker: LookupChecker,
                read_size: int = 1 << 20, may_fail: frozenset[int] = frozenset()) -> int:
    """Read every file of the model through `daemon`; compare bytes; check every lookup.
    `bufs[i]` is the buffer of the device the model gave index i on this node (None if missing
    here); files on an index in `may_fail` (a device with an injected fault) may fail cleanly,
    but if they read, their bytes must be right. A file whose fmap references an index missing on
    this node may fail cleanly too, even where its bytes all lie on present devices (a short file
    striped over a missing one): push-fd marks such a file bad at GET_FMAP (spec §3.5), pull
    fails only the faults on the missing index; both are clean errors for a file on that device.
    Its bytes, if it reads, must be right. Returns the number of lookups checked."""
    checked = 0
    for path, desc in expected.namespace:
        if desc[0] != "f":
            continue
        size, extents, chunk = desc[1], desc[5], desc[6]
        want = gather(size, extents, chunk, bufs)
        ino = daemon.ino_of(path)
        if ino is None:
            raise InvariantViolation(Invariant.NS_CONFLICT, f"{path!r} is in the log but not served")
        got = bytearray()
        failed: FamfsError | None = None
        try:
            for off in range(0, size, read_size):
                got += daemon.read(ino, off, read_size)
        except FamfsError as e:
            failed = e
        checked += checker.check()           # a wrong device is named as such before its bytes
        used = {e[0] for e in extents}
        if failed is not None and (may_fail & used or any(bufs[i] is None for i in used)):
            continue
        if failed is not None:
            if want is not None and getattr(failed, "index", None) == 0:
                raise InvariantViolation(Invariant.IDX_PRIMARY, f"{path!r}: index 0, the primary, does not "
                                                                f"resolve ({failed})")
            if want is not None:
                raise InvariantViolation(Invariant.DATA, f"{path!r}: read failed ({failed}) though every "
                                                         "device it uses is present")
            continue
        if want is None:
            raise InvariantViolation(Invariant.IDX_LOOKUP, f"{path!r}: read succeeded though a device "
                                                           "it uses is missing on this node")
        if bytes(got) != want:
            bad = next(i for i in range(min(len(got), len(want)) + 1)
                       if i >= min(len(got), len(want)) or got[i] != want[i])
            raise InvariantViolation(Invariant.DATA, f"{path!r}: {len(got)} bytes read, {len(want)} "
                                                     f"expected, first difference at {bad}")
    return checked + checker.check()
