"""One fuzz case's checks: replay against the reference model, then reads and lookups on a node.

`check_replay` compares what `replay.py` produced (or the typed error it raised) with the model's
`Verdict` and raises `InvariantViolation` naming the rule at stake:

* the model rejects the image but replay accepted it (or the other way round, or another ID):
  that image-level invariant (SB-VALID, LOG-HEADER, IDX-PRIMARY);
* the first entry where the per-entry rejections differ: the invariant of that rejection;
* where replay stopped (LOG-PREFIX), the index table (IDX-DENSE), the namespace (NS-CONFLICT).

`Expectation` is what the oracle expects of one node, built from the model's verdict and the
node's devices (never by a case driver): index -> UUID, local name -> UUID, the buffer holding
each index's bytes on this node, and for every index *why* its lookups and reads may fail
(`lookups.Why`: missing here, claimed twice, a fault in force, ...). `check_files` reads every
file the model says exists, one extent or strip chunk at a time (`ranges`: the oracle's own
arithmetic over the model's extents), and judges each range on its own:

* a range on an index with no cause to fail must read, and its bytes must equal the bytes at
  the model's extent in the device buffer (DATA), compared in bulk (one slice per range);
* a range on an index that may fail may fail with a clean errno (EIO; EHWPOISON or ENODEV for an
  injected device fault), or read right; a range on a missing or ambiguous index that reads
  anyway is IDX-LOOKUP;
* under push-fd a file referencing an index that was never pushed is marked bad at GET_FMAP
  (docs/famfs-format.md section 4): every range of it may fail (pull generations fail only the ranges on that index).

Every lookup the probe saw is judged before the bytes (`LookupChecker`), so a wrong device is
named IDX-LOOKUP, not DATA. Findings carry op "read" and the site `<abi>/<simple|interleave>`.

Every driver uses this one check: the in-process node case and sessions read through the
daemon's kernel side (`daemon_reader`), the FUSE mount case with pread through the mount, and
the real-DAX lanes through the mount in a qemu guest, which only `observe`s the same `plan`
(a SHA-256 per range) and ships it out; the host judges it (`observed_reader`, `Digest`).
`check_listing` holds a node's listing (a mount's walk, an external program's file set)
against the model's namespace.
"""
from __future__ import annotations

import ctypes
import errno as errnos
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence

from harness.famfs import wire
from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid, uuid_str
from harness.famfs.invariants import Invariant
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker, Why
from harness.oracle.model import Verdict, carried_uuid, observed


def check_replay(expected: Verdict, got: Any) -> None:
    """`got` is a `replay.Replay` or the `FamfsError` replay raised."""
    if isinstance(got, FamfsError):
        if expected.image_error != got.invariant:
            inv = expected.image_error or got.invariant
            raise InvariantViolation(inv, f"replay raised {got!s}; the model expects "
                                          f"{expected.image_error or 'a usable image'}", op="replay", site="image")
        return
    if expected.image_error:
        raise InvariantViolation(expected.image_error,
                                 f"replay accepted an image the model rejects ({expected.image_error})",
                                 op="replay", site="image")
    seen = observed(got)
    if seen.rejections != expected.rejections:
        mine, theirs = dict(expected.rejections), dict(seen.rejections)
        entry = min(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        inv = mine.get(entry) or theirs[entry]
        raise InvariantViolation(inv, f"entry {entry}: replay says {theirs.get(entry) or 'ok'}, "
                                      f"the model says {mine.get(entry) or 'ok'}", op="replay",
                                 site="accepted" if entry in mine else "rejected")
    if seen.stopped_at != expected.stopped_at:
        raise InvariantViolation(Invariant.LOG_PREFIX, f"replay stopped at {seen.stopped_at}, "
                                                       f"the model at {expected.stopped_at}",
                                 op="replay", site="prefix")
    if seen.table != expected.table:
        raise InvariantViolation(Invariant.IDX_DENSE, f"index table {_uuids(seen.table)} != model's "
                                                      f"{_uuids(expected.table)}", op="replay", site="table")
    if seen.namespace != expected.namespace:
        a, b = dict(seen.namespace), dict(expected.namespace)
        path = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[0]
        raise InvariantViolation(Invariant.NS_CONFLICT, f"{path!r}: replay {a.get(path)}, model {b.get(path)}",
                                 op="replay", site="namespace")


def _uuids(table: tuple[tuple[bytes, int], ...]) -> list[str]:
    return [uuid_str(u)[:8] for u, _ in table]


def ranges(size: int, extents: Sequence[tuple[int, int, int]], chunk: int | None) -> list[tuple[int, int, int, int]]:
    """The pieces of a file of `size` laid out on `extents` ((devindex, offset, len)), simple
    (chunk None: one piece per extent) or striped with `chunk`-byte chunks (one piece per chunk,
    chunk c on strip c % n at row c // n): (file offset, length, devindex, device offset)."""
    out: list[tuple[int, int, int, int]] = []
    if chunk is None:
        at = 0
        for dev, off, ln in extents:
            if at >= size:
                break
            take = min(ln, size - at)
            out.append((at, take, dev, off))
            at += take
        return out
    n = len(extents)
    for c in range(-(-size // chunk) if n else 0):
        dev, off, _ = extents[c % n]
        at = c * chunk
        out.append((at, min(chunk, size - at), dev, off + (c // n) * chunk))
    return out


def gather(size: int, extents: Sequence[tuple[int, int, int]], chunk: int | None,
           bufs: Sequence[Any]) -> bytes | None:
    """The bytes of a file of `size` laid out on `extents`; None if a device buffer is missing."""
    pieces = ranges(size, extents, chunk)
    if any(bufs[dev] is None for _, _, dev, _ in pieces):
        return None
    return b"".join(bytes(memoryview(bufs[dev])[off:off + ln]) for _, ln, dev, off in pieces)


# The errno a range may fail with, per cause: a failed lookup is EIO; a device fault whatever the
# device reported (EIO; EHWPOISON for poisoned memory; ENODEV for a device gone).
EHWPOISON = getattr(errnos, "EHWPOISON", 133)
CLEAN = {Why.FAULT: frozenset({errnos.EIO, EHWPOISON, errnos.ENODEV}),
         Why.BEYOND_TABLE: frozenset({errnos.EINVAL})}
LOOKUP_ERRNO = frozenset({errnos.EIO})


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the oracle expects of one node (see the module docstring). `bufs[i]` is the buffer
    whose bytes index i must read as on this node (None: no single device carries it here)."""

    node: str
    abi: str
    uuids: Mapping[int, Uuid]
    names: Mapping[str, Uuid]
    bufs: tuple[Any, ...]
    why: Mapping[int, Why] = field(default_factory=dict)

    @classmethod
    def of(cls, expected: Verdict, node: str, devices: Mapping[str, Any], *, primary: str | None = None,
           abi: str = "pull-devt", faulty: Collection[str] = ()) -> "Expectation":
        """From the model's verdict and the node's devices (local name -> buffer): each index's
        UUID is looked for among the devices' superblocks; `primary` is the device the daemon was
        handed as index 0; devices in `faulty` have a fault injected and in force."""
        carried = {name: carried_uuid(buf) for name, buf in devices.items()}
        claims: dict[bytes, list[str]] = {}
        for name, u in carried.items():
            if u is not None:
                claims.setdefault(u, []).append(name)
        bufs: list[Any] = []
        why: dict[int, Why] = {}
        for k, (u, _) in enumerate(expected.table):
            who = [primary] if k == 0 and primary is not None else claims.get(u, [])
            if not who:
                why[k] = Why.MISSING
            elif len(who) > 1:
                why[k] = Why.AMBIGUOUS
            elif who[0] in faulty:
                why[k] = Why.FAULT
            bufs.append(devices[who[0]] if len(who) == 1 else None)
        return cls(node, abi, {k: u for k, (u, _) in enumerate(expected.table)},
                   {name: u for name, u in carried.items() if u is not None}, tuple(bufs), why)

    def checker(self, site: str | None = None) -> LookupChecker:
        """A lookup checker for this node, its causes of failure in force."""
        return self.install(LookupChecker(site=self.abi if site is None else site))

    def file_may_fail(self, indices: Collection[int]) -> Why | None:
        """Why every range of a file on `indices` may fail, or None: the kernel refuses the whole
        GET_FMAP reply (EINVAL) when it references an index past its daxdev table, which may be
        smaller than the 64 indices the log allows (24 slots in the V-series pull kernels); push-fd
        marks the whole file bad at GET_FMAP when it references an index never pushed."""
        if self.abi in wire.ABIS and any(i >= wire.ABIS[self.abi].nslots for i in indices):
            return Why.BEYOND_TABLE
        if self.abi != "push-fd":
            return None
        return next((self.why[i] for i in sorted(indices) if self.why.get(i) in (Why.MISSING, Why.AMBIGUOUS)), None)


    def install(self, checker: LookupChecker) -> LookupChecker:
        """Make `checker` (maybe shared by several nodes, for IDX-CLUSTER) judge this node's
        lookups by this expectation: the model's table, this node's names and causes of failure."""
        checker.expected = dict(self.uuids)
        checker.names[self.node] = dict(self.names)
        checker.justify[self.node] = dict(self.why)
        return checker


Reader = Callable[[str, int, int], Any]
Piece = tuple[int, int, int, int]


def plan(files: Sequence[tuple[str, tuple]]) -> list[tuple[str, tuple, list[Piece]]]:
    """The reads the oracle makes of the model's namespace `files`: every file with its pieces
    (`ranges`). A reader elsewhere (a qemu guest) reads the same plan (`observe`)."""
    return [(path, desc, ranges(desc[1], desc[5], desc[6])) for path, desc in files if desc[0] == "f"]


@dataclass(frozen=True, slots=True)
class Digest:
    """What a reader in another place (a qemu guest) saw of one range: its length and SHA-256, so
    the bytes need not travel; `check_files` compares it with the digest of the bytes expected."""

    length: int
    sha256: str

    @classmethod
    def of(cls, data: Any) -> "Digest":
        return cls(len(data), hashlib.sha256(data).hexdigest())

    def __len__(self) -> int:
        return self.length


def observe(files: Sequence[tuple[str, tuple]], read: Reader) -> list[list[Any]]:
    """Read the oracle's `plan` of `files` with `read` and record each range as
    [path, offset, length, SHA-256 or None, errno]: JSON a host-side `check_files` judges
    (`observed_reader`). Only observes: nothing here decides what is right."""
    out: list[list[Any]] = []
    for path, _, pieces in plan(files):
        for at, ln, _, _ in pieces:
            try:
                out.append([path, at, ln, Digest.of(read(path, at, ln)).sha256, 0])
            except (FamfsError, OSError) as e:
                out.append([path, at, ln, None, e.errno or errnos.EIO])
    return out


def observed_reader(records: Sequence[Sequence[Any]]) -> Reader:
    """`read(path, offset, length)` answered from `observe`'s records: a `Digest`, or the OSError
    the reader saw. A range the records lack was never read there: that is a harness fault."""
    by_range = {(r[0], r[1], r[2]): (r[3], r[4]) for r in records}

    def read(path: str, offset: int, length: int) -> Any:
        try:
            digest, err = by_range[(path, offset, length)]
        except KeyError:
            raise RuntimeError(f"the reader recorded no read of {path!r} [{offset:#x}, +{length:#x})") from None
        if err:
            raise OSError(err, errnos.errorcode.get(err, "?"))
        return Digest(length, digest)
    return read


def check_listing(expected: Verdict, seen: Mapping[str, Mapping[str, Any]], node: str, *, site: str = "listing",
                  files_only: bool = False, top_only: bool = False) -> None:
    """A node's listing (path -> what it showed: type, size, mode, uid, gid, any of them) against
    the model's namespace: the same paths (only files with `files_only`, only top-level names
    with `top_only`), and where the listing gives an attribute, the model's value (NS-CONFLICT)."""
    want = {p: d for p, d in expected.namespace
            if (not files_only or d[0] == "f") and (not top_only or "/" not in p)}
    for path in sorted(set(want) | set(seen)):
        if path not in seen or path not in want:
            raise InvariantViolation(Invariant.NS_CONFLICT, f"node {node}: {path!r} " + (
                "is in the log but not listed" if path not in seen else "is listed but not in the log"),
                op="readdir", site=site)
        d = want[path]
        attrs = {"type": d[0], "mode": d[1], "uid": d[2], "gid": d[3]} if d[0] == "d" else \
            {"type": "f", "size": d[1], "mode": d[2], "uid": d[3], "gid": d[4]}
        for key, value in seen[path].items():
            if key in attrs and value != attrs[key]:
                raise InvariantViolation(Invariant.NS_CONFLICT, f"node {node}: {path!r}: {key} {value!r}, the log "
                                                                f"has {attrs[key]!r}", op="readdir", site=site)


def check_files(files: Sequence[tuple[str, tuple]], exp: Expectation, read: Reader, checker: LookupChecker,
                feed: Callable[[], None] | None = None) -> Counts:
    """Read every file of `files` (the model's (path, description) pairs) range by range with
    `read(path, offset, length)` (bytes or a `Digest`, or a FamfsError / OSError with an errno);
    judge the lookups (after `feed()` hands them to `checker`, for a probe log), then every range."""
    for path, desc, pieces in plan(files):
        extents, chunk = desc[5], desc[6]
        form = "simple" if chunk is None else "interleave"
        whole = exp.file_may_fail({e[0] for e in extents})
        outcomes: list[tuple[Piece, Any, int, BaseException | None]] = []
        for piece in pieces:
            try:
                outcomes.append((piece, read(path, piece[0], piece[1]), 0, None))
            except (FamfsError, OSError) as failed:
                outcomes.append((piece, None, failed.errno or 0, failed))
        if feed is not None:
            feed()
        checker.check()                       # a wrong device is named as such before its bytes
        for (at, ln, dev, off), got, err, e in outcomes:
            why = whole or exp.why.get(dev)
            site = f"{exp.abi}/{form}"
            if err:
                allowed = CLEAN.get(why, LOOKUP_ERRNO) if why is not None else frozenset()
                if err in allowed:
                    continue
                if why is None:
                    inv = Invariant.IDX_PRIMARY if dev == 0 and getattr(e, "index", None) == 0 else Invariant.DATA
                    raise InvariantViolation(inv, f"{path!r}: [{at:#x}, +{ln:#x}) on index {dev} failed ({e}) "
                                                  "though its device is present", op="read", site=site)
                raise InvariantViolation(Invariant.IDX_LOOKUP, f"{path!r}: [{at:#x}, +{ln:#x}) on index {dev} "
                                                               f"may fail ({why}), but not with errno {err} ({e})",
                                         op="read", site=site)
            own = exp.why.get(dev)
            if own in (Why.MISSING, Why.AMBIGUOUS):
                raise InvariantViolation(Invariant.IDX_LOOKUP, f"{path!r}: [{at:#x}, +{ln:#x}) read though index "
                                                               f"{dev} is {own} on node {exp.node}",
                                         op="read", site=site)
            if whole is not None:
                raise InvariantViolation(Invariant.IDX_LOOKUP, f"{path!r}: [{at:#x}, +{ln:#x}) read though the file "
                                                               f"references an index that is {whole} here (its "
                                                               "GET_FMAP must fail)", op="read", site=site)
            buf = exp.bufs[dev] if dev < len(exp.bufs) else None
            if buf is None:                   # undefined or unreadable here: the read must not succeed
                raise InvariantViolation(Invariant.IDX_LOOKUP, f"{path!r}: [{at:#x}, +{ln:#x}) read on index {dev}, "
                                                               "which has no device on this node", op="read", site=site)
            if not _same_at(buf, off, ln, got):
                want = buf[off:off + ln]
                raise InvariantViolation(Invariant.DATA, f"{path!r}: [{at:#x}, +{ln:#x}) on index {dev}: "
                                                         f"{len(got)} bytes read differ from the {ln} at device "
                                                         f"offset {off:#x}{_first_difference(want, got)}",
                                         op="read", site=site)
    if feed is not None:
        feed()
    checker.check()
    return checker.counts


def _same(want: Any, got: Any) -> bool:
    """Bulk equality of two byte strings (a bytearray on one side keeps it a memcmp); a `Digest`
    is compared by length and SHA-256."""
    if isinstance(got, Digest):
        return got == Digest.of(want)
    if isinstance(got, memoryview):
        got = got.tobytes() if not isinstance(want, bytearray) else got
    return len(want) == len(got) and want == got


def _same_at(buf: Any, off: int, ln: int, got: Any) -> bool:
    """Is `got` the `ln` bytes of `buf` at `off`? Compared in place where `buf` can (bytes and
    bytearray: `startswith` at an offset is one memcmp), so the expected range is never copied
    (a slice was a copy of every range read: a third of a structured case's CPU). A `Digest` (a
    guest's observation) is compared with the digest of that range."""
    if isinstance(got, Digest):
        return got == Digest.of(buf[off:off + ln])
    if len(got) != ln:
        return False
    if isinstance(got, memoryview) and got.obj is buf and ln:
        here, base = _address(got), _address(buf)
        if here is not None and base is not None and here == base + off:
            return True                 # the very bytes: the same memory, so no byte can differ
    if isinstance(buf, (bytes, bytearray)):
        return buf.startswith(got, off)
    return _same(buf[off:off + ln], got)


def _address(b: Any) -> int | None:
    """Where a writable, contiguous buffer's bytes start (None for any other). An in-process
    kernel's zero-copy read is a view of the device buffer the model names: every structured
    case's range was a memcmp of a buffer with itself (12 % of its CPU); where the read resolved
    elsewhere, the bytes are compared as before."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(b))
    except (TypeError, ValueError, BufferError):
        return None


def _first_difference(want: Any, got: Any) -> str:
    if isinstance(got, Digest):
        return ", the SHA-256 differs"
    a, b = bytes(want), bytes(got)
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return f", equal up to {hi:#x}"
    while hi - lo > 1:                              # bisect to the first differing byte
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if a[:mid] == b[:mid] else (lo, mid)
    return f", first difference at +{lo:#x}"


def daemon_reader(daemon: Any) -> Reader:
    """`read(path, offset, length)` through an in-process daemon's kernel side."""
    def read(path: str, offset: int, length: int) -> Any:
        ino = daemon.ino_of(path)
        if ino is None:
            raise InvariantViolation(Invariant.NS_CONFLICT, f"{path!r} is in the log but not served",
                                     op="lookup", site="namespace")
        return daemon.read(ino, offset, length, zero_copy=True)   # one range is one run: a view, no copy
    return read


def check_reads(daemon: Any, expected: Verdict, bufs: Sequence[Any], checker: LookupChecker,
                read_size: int = 1 << 20, may_fail: frozenset[int] = frozenset(), abi: str = "pull-devt") -> int:
    """`check_files` over an in-process daemon, for a caller that has the buffers per index
    (None: missing on this node) and the indices with a fault in force (`may_fail`).
    Returns the number of lookups checked."""
    why = {i: Why.MISSING for i, b in enumerate(bufs) if b is None}
    why.update({i: Why.FAULT for i in may_fail})
    node = daemon.node
    for i, w in why.items():
        checker.allow(node, i, w)
    exp = Expectation(node, abi, dict(checker.expected), dict(checker.names.get(node, {})), tuple(bufs), why)
    before = checker.checked
    check_files(expected.namespace, exp, daemon_reader(daemon), checker)
    return checker.checked - before
