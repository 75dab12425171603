"""The shm_states case: a master runs operations on shared memory; a client reads every state of each.

One input is a short workload (`decode`): mkfs, then 1-4 operations (mkdir, file, ADD_DAXDEV, mkfs
again over the mounted file system, appends until the log is full). The master runs each on its own
cache (`famfs.shm.Recorder` records its stores, flushes and fences); `faults.shm.states` gives the
shared-memory states another node or a crash may see during it. Every state (or, when the model
admits more than `ALL`, its structured corners plus `SAMPLES` chosen by the input) is shown to a
client, as a fresh mount (a node mounting now, or recovery after a crash of the master) or as a
running mount (mounted before the operation, holding the lines it read then in its cache), and
judged with the oracle's model (`oracle.model.verdict` of the memory before and after):

* the client shows exactly the file system before or after the operation: never a partial entry
  (LOG-PREFIX), never an index table that is neither (IDX-CLUSTER: also each index's UUID against
  the master's own table);
* every file it shows reads the bytes the master wrote (DATA, `oracle.case.check_files`);
* at the operation's end, with only what its flushes and fences guarantee in shared memory, both
  kinds of client show exactly the master's namespace and table (SHM-CONVERGE);
* during mkfs over a mounted file system a running mount shows the old one or refuses with
  FS-IDENTITY, and then refuses reads of its old files too; a fresh mount shows the old, the new
  or a typed refusal, never a mix.

`STATS` sums, per operation kind, the states the model admits without and with pruning and how
many were run (bench and the nightly report read it).
"""
from __future__ import annotations

import errno
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.errors import FamfsError, ImageError
from harness.famfs.ids import Uuid
from harness.famfs.image import Image, mkfs_secondary, new_uuid, pattern
from harness.famfs.invariants import Invariant
from harness.famfs.layout import (
    ENTRY_SIZE, HEADER_SIZE, SUPERBLOCK, EntryType, FileMeta, LogHeader, SimpleFmap, Superblock,
)
from harness.famfs.shm import LINE, Recorder
from harness.faults import shmcov
from harness.faults.shm import ClientDevice, OpStates, states
from harness.gen import decode
from harness.oracle.case import Expectation, check_files, daemon_reader
from harness.oracle.invariants import InvariantViolation
from harness.oracle.model import Verdict, observed, verdict

DEV_SIZE = (2 << 20) + (128 << 10)   # superblock region, the log, then 30 pages of file data
SEC_SIZE = (2 << 20) + (64 << 10)  # a secondary's first 2 MiB are reserved (its superblock)
LOG_LEN = 8 << 10                 # 15 slots: FILL fills it in a case
AU = 4096
HEAD = (2 << 20) + LOG_LEN        # superblock region and log: the metadata the model covers
ALL = 96                          # run every state when the model admits at most this many
SAMPLES = 12                      # else the corners and this many states chosen by the input
FILL_SAMPLES = 2
OPS = shmcov.OPS                  # mkfs, mkdir, file, add_daxdev, remkfs, fill
FRESH, RUNNING = "fresh", "running"
ABI = "push-fd"                   # the newest kernels: 4 KiB-aligned extents, so pages of a small device
REFUSALS = {Invariant.SB_VALID, Invariant.LOG_HEADER, Invariant.IDX_PRIMARY}


NIL = Uuid(bytes(16))                  # the secondary's file-system and system UUIDs: none


@dataclass
class OpCount:
    """States of one operation kind, summed over its runs. Without pruning an operation of n
    atomic stores has 2^n states (any subset visible); `stores` sums the n, `silent` the stores
    pruned as silent, `distinct` the states the model admits, `run` the states judged."""

    ops: int = 0
    stores: int = 0
    silent: int = 0
    distinct: int = 0
    run: int = 0

    def add(self, st: OpStates, run: int) -> None:
        self.ops += 1
        self.stores += st.units + st.silent
        self.silent += st.silent
        self.distinct += st.distinct
        self.run += run


STATS: dict[str, OpCount] = defaultdict(OpCount)


def stats_table() -> dict[str, dict[str, int]]:
    """STATS per operation kind: ops, atomic stores and silent ones (summed: an operation of n
    stores has 2^n states unpruned, so the pruning removed 2^n minus its model states), the
    model's states and the states run."""
    return {k: {"ops": v.ops, "stores": v.stores, "silent": v.silent, "distinct": v.distinct, "run": v.run}
            for k, v in sorted(STATS.items())}


def corpus_states(corpora: Any, max_s: float = 60.0) -> dict[str, Any]:
    """Replay the shm_states corpus in this process (at most `max_s` seconds): per operation kind
    the states the model admitted, the pruning's share and the states run, and states per second
    (the nightly report's table: the fuzzing children keep their own counts)."""
    import time
    from pathlib import Path

    from harness.engine.campaign import corpus_inputs
    inputs = corpus_inputs([Path(corpora) / "shm_states"])
    STATS.clear()
    start, cases, findings = time.perf_counter(), 0, 0
    for data in inputs:
        if time.perf_counter() - start > max_s:
            break
        cases += 1
        try:
            shm_states_case(data)
        except (InvariantViolation, FamfsError):
            findings += 1
    el = time.perf_counter() - start
    ops = stats_table()
    run = sum(v["run"] for v in ops.values())
    return {"inputs": len(inputs), "cases": cases, "findings": findings, "seconds": round(el, 1),
            "states_run": run, "states_per_s": round(run / max(el, 1e-9), 1), "ops": ops}


@dataclass
class World:
    """The master's cache (`master`), shared memory (`shared`), a secondary device, the image."""

    master: bytearray = field(default_factory=lambda: bytearray(DEV_SIZE))
    shared: bytearray = field(default_factory=lambda: bytearray(DEV_SIZE))
    secondary: bytearray = field(default_factory=lambda: bytearray(SEC_SIZE))
    sec_uuid: Uuid = field(default_factory=new_uuid)
    image: Image | None = None
    tables: tuple[list[Uuid], ...] = ()    # the master's index tables before and after the operation
    full: bool = False
    args: tuple[int, int] = (0, 0)          # the current operation's two argument bytes
    files: int = 0
    lookups: int = 0

    def __post_init__(self) -> None:
        self.rec = Recorder(self.master)
        mkfs_secondary(self.secondary, SEC_SIZE, dev_uuid=self.sec_uuid, fs_uuid=NIL, system_uuid=NIL)


MAX_OPS = 4
WORKLOAD = 1 + 4 * MAX_OPS        # the workload's bytes: op count, then kind, client, 2 arguments each


def shm_states_case(data: bytes) -> int:
    """Run one workload (see the module docstring); the number of lookups checked. The first
    `WORKLOAD` bytes are the workload, the rest choose the states to sample."""
    head = data[:WORKLOAD].ljust(WORKLOAD, b"\0")
    picks = decode.Choices(data[WORKLOAD:])
    w = World()
    _run(w, picks, "mkfs", FRESH)
    for k in range(1 + head[0] % MAX_OPS):
        kind_b, mode_b, a, b = head[1 + 4 * k:5 + 4 * k]
        kind = OPS[1 + kind_b % (len(OPS) - 1)]
        mode = RUNNING if mode_b & 1 else FRESH
        if kind in ("mkdir", "file", "add_daxdev", "fill") and w.full:
            kind = "remkfs"
        w.args = (a, b)
        _run(w, picks, kind, mode)
    return w.lookups


def _run(w: World, c: decode.Choices, kind: str, mode: str) -> None:
    """One master operation, every chosen state judged, then its end state (convergence)."""
    if kind == "fill":
        while not w.full:
            _one(w, c, "fill", mode, lambda: _mkdir(w, f"fill{w.files}"), FILL_SAMPLES)
        return
    _one(w, c, kind, mode, lambda: _operate(w, c, kind), SAMPLES)


def _operate(w: World, c: decode.Choices, kind: str) -> None:
    if kind in ("mkfs", "remkfs"):
        w.image = Image.mkfs([w.master], [DEV_SIZE], log_len=LOG_LEN, alloc_unit=AU, port=w.rec,
                             head_is_zero=kind == "mkfs")
        w.full = False
    elif kind == "mkdir":
        _mkdir(w, f"d{w.files}")
    elif kind == "add_daxdev":
        assert w.image is not None
        known = any(d.uuid == w.sec_uuid for d in w.image.table)
        _append(w, lambda image: image.add_daxdev(new_uuid() if known else w.sec_uuid, SEC_SIZE))
    else:
        _file(w)


def _append(w: World, append: Any) -> None:
    assert w.image is not None
    try:
        append(w.image)
    except ImageError as e:
        if e.errno and w.image.log.next_index >= w.image.log.slots:
            w.full = True
            return
        raise


def _mkdir(w: World, path: str) -> None:
    w.files += 1
    _append(w, lambda image: image.mkdir(path))


def _file(w: World) -> None:
    """A file of 1-3 pages on index 0 or on the secondary (if defined), its data in shared memory
    before its entry is appended (the entry is famfs's commit point for the namespace)."""
    image = w.image
    assert image is not None
    size = AU * (1 + w.args[0] % 3) - (w.args[0] >> 2) % 8 * 100
    index = 1 if len(image.table) > 1 and image.table[1].uuid == w.sec_uuid and w.args[1] & 1 else 0
    path = f"f{w.files}"
    w.files += 1
    if image.log.next_index >= image.log.slots:
        w.full = True
        return
    try:
        extent = image.alloc.alloc(size, index)
    except ImageError:                          # the device is full: no file, nothing appended
        return
    data = pattern(path, size)
    target = (w.master, w.shared) if index == 0 else (w.secondary,)
    for buf in target:
        buf[extent.offset:extent.offset + size] = data
    _append(w, lambda im: im.log.append(EntryType.FILE, FileMeta(size, 2, 0, 0, 0o644, path.encode(),
                                                                  SimpleFmap.of([extent]))))


def _one(w: World, c: decode.Choices, kind: str, mode: str, operate: Any, samples: int) -> None:
    before = bytes(w.master[:HEAD])
    v_before = verdict(bytes(memoryview(w.shared)[:HEAD]), DEV_SIZE)   # one copy, not two
    cached = _cached_lines(w.shared) if mode == RUNNING and v_before.image_error is None else None
    w.rec.take()
    old: list[Uuid] = [d.uuid for d in w.image.table] if w.image is not None else []
    operate()
    ops = w.rec.take()
    assert w.image is not None
    w.tables = (old, [d.uuid for d in w.image.table])
    st = states(w.shared[:HEAD], before, ops)
    v_after = verdict(bytes(memoryview(w.master)[:HEAD]), DEV_SIZE)
    if st.distinct <= ALL:
        chosen = list(st.all_states())
    else:
        chosen = st.corners() + st.sample(lambda n: c.int(0, n - 1) if n > 1 else 0, samples)
    STATS[kind].add(st, len(chosen) + 1)
    op = OPS.index(kind)
    client = ClientDevice(bytearray(w.shared))
    base = tuple(0 for _ in st.lines)
    read: set[tuple[str, int]] = set()
    for x in chosen:
        shmcov.behind(op, sum(1 for v, vs in zip(x, st.versions, strict=True) if v < len(vs) - 1))
        _judge(w, client, st, x, cached, v_before, v_after, kind, base, read, final=False)
    _judge(w, client, st, st.final, cached, v_before, v_after, kind, base, set(), final=True)
    for at, line in st.contents(st.final):
        w.shared[at:at + LINE] = line


def _cached_lines(shared: bytearray) -> dict[int, bytes]:
    """The lines a client read at its logplay of `shared`: superblock, log header, used entries."""
    sb = Superblock.decode(shared)
    header = LogHeader.decode(shared, sb.log_offset)
    end = sb.log_offset + HEADER_SIZE + ENTRY_SIZE * min(header.next_index, 64)
    lines = list(range(0, -(-SUPERBLOCK.size // LINE))) + list(range(sb.log_offset // LINE, -(-end // LINE)))
    return {k: bytes(shared[k * LINE:(k + 1) * LINE]) for k in lines}


def _judge(w: World, client: ClientDevice, st: OpStates, x: tuple[int, ...], cached: dict[int, bytes] | None,
           v_before: Verdict, v_after: Verdict, kind: str, base: tuple[int, ...], read: set[tuple[str, int]], *,
           final: bool) -> None:
    """One state to one or both kinds of client. `read`: the (client kind, verdict) pairs whose
    files were already read in this operation: a state with the same verdict has the same fmaps
    over the same data (file data is outside the metadata the states vary), so its reads would
    judge the same bytes through the same maps, and are made once."""
    op = OPS.index(kind)
    modes = [FRESH, RUNNING] if final and cached is not None else [RUNNING if cached is not None else FRESH]
    for mode in modes:
        secondary = DaxDevice.in_memory(w.secondary, "dax1.0", node="client")
        daemon: Daemon | None = None
        try:
            if mode == RUNNING:
                assert cached is not None
                client.show(st, base, {})
                host = Resolver("client", [client, secondary])
                daemon = Daemon.mount(host, primary=client, abi=ABI)
                client.show(st, x, cached)
                retried = _refresh(daemon, client)
            else:
                client.show(st, x, {})
                host = Resolver("client", [client, secondary])
                daemon = Daemon.mount(host, primary=client, abi=ABI)
                retried = False
        except FamfsError as e:
            _refused(e, daemon, mode, kind, v_before, v_after, final, op)
            continue
        assert daemon.state is not None
        seen = observed(daemon.state)
        want = v_after if final else _match(seen, v_before, v_after)
        if want is None or (final and not _same(seen, v_after)):
            _mismatch(w, seen, v_before, v_after, kind, mode, final)
        assert want is not None
        shmcov.seen(op, shmcov.RETRIED if retried else shmcov.AFTER if want is v_after else shmcov.BEFORE)
        _cluster(w, seen, kind, mode)
        if (mode, id(want)) in read:
            continue
        read.add((mode, id(want)))
        exp = Expectation.of(want, "client", {"dax0.0": client.memory, "dax1.0": w.secondary}, primary="dax0.0",
                             abi=ABI)
        checker = exp.checker(site="shm")
        daemon.probe = daemon.kernel.probe = checker
        check_files(want.namespace, exp, daemon_reader(daemon), checker)
        w.lookups += checker.counts.total


def _refresh(daemon: Daemon, client: ClientDevice) -> bool:
    """A running mount's logplay; whether its re-read after a mismatch dropped stale entry lines
    (an invalidation past the superblock and the log header)."""
    daemon.refresh()
    assert daemon.state is not None
    entries = daemon.state.superblock.log_offset + HEADER_SIZE
    return any(offset >= entries for offset, _ in client.drops)


def _refused(e: FamfsError, daemon: Daemon | None, mode: str, kind: str, v_before: Verdict, v_after: Verdict,
             final: bool, op: int) -> None:
    """A client refused a state: allowed only while mkfs runs (a typed refusal of the half-made
    image; FS-IDENTITY for a running mount of the old one, whose old files then fail too)."""
    if kind in ("mkfs", "remkfs") and not final and e.invariant in REFUSALS:
        shmcov.seen(op, shmcov.REFUSED)
        return
    if kind == "remkfs" and mode == RUNNING and e.invariant == Invariant.FS_IDENTITY:
        shmcov.seen(op, shmcov.IDENTITY)
        if daemon is not None:
            for path in [p for p, d in v_before.namespace if d[0] == "f"][:1]:
                ino = daemon.ino_of(path)
                try:
                    got = daemon.read(ino, 0, 1) if ino is not None else None
                except FamfsError as err:
                    if err.invariant != Invariant.FS_IDENTITY:
                        raise InvariantViolation(Invariant.FS_IDENTITY, f"{path!r} after the re-make failed with "
                                                 f"{err}, not FS-IDENTITY", op="read", site="shm/remkfs") from None
                    continue
                if got is not None:
                    raise InvariantViolation(Invariant.FS_IDENTITY, f"{path!r} read through its old fmap after "
                                             "the file system was re-made", op="read", site="shm/remkfs")
        return
    inv = Invariant.SHM_CONVERGE if final else e.invariant
    raise InvariantViolation(inv, f"{kind}: a {mode} client refused a state{' at the end' if final else ''}: {e}",
                             op="replay", site=f"shm/{kind}") from None


def _same(a: Verdict, b: Verdict) -> bool:
    return (a.rejections, a.stopped_at, a.table, a.namespace) == (b.rejections, b.stopped_at, b.table, b.namespace)


def _match(seen: Verdict, v_before: Verdict, v_after: Verdict) -> Verdict | None:
    for v in (v_after, v_before):
        if v.image_error is None and _same(seen, v):
            return v
    return None


def _mismatch(w: World, seen: Verdict, v_before: Verdict, v_after: Verdict, kind: str, mode: str, final: bool) -> None:
    site = f"shm/{kind}"
    if final:
        raise InvariantViolation(Invariant.SHM_CONVERGE, f"{kind}: after the master's flushes and fences a {mode} "
                                 f"client shows {len(seen.namespace)} paths and {len(seen.table)} indices, the "
                                 f"master {len(v_after.namespace)} and {len(v_after.table)}"
                                 + (f" (stopped at entry {seen.stopped_at})" if seen.stopped_at is not None else ""),
                                 op="replay", site=site)
    _cluster(w, seen, kind, mode)
    if seen.table not in (v_before.table, v_after.table):
        raise InvariantViolation(Invariant.IDX_CLUSTER, f"{kind}: a {mode} client's index table is neither the "
                                 "one before nor the one after the operation", op="replay", site=site)
    if seen.stopped_at is not None:
        raise InvariantViolation(Invariant.LOG_PREFIX, f"{kind}: a {mode} client saw next_index cover an "
                                 f"incomplete entry {seen.stopped_at}", op="replay", site=site)
    raise InvariantViolation(Invariant.LOG_PREFIX, f"{kind}: a {mode} client applied a log that is neither the "
                             "one before nor the one after the operation", op="replay", site=site)


def _cluster(w: World, seen: Verdict, kind: str, mode: str) -> None:
    """IDX-CLUSTER: index i on the client is the UUID the master gave i (before or after the
    operation: mkfs again gives the primary a new UUID)."""
    uuids = [u for u, _ in seen.table]
    if not any(uuids == mine[:len(uuids)] for mine in w.tables):
        i = next(k for k, u in enumerate(uuids) if not any(k < len(m) and m[k] == u for m in w.tables))
        raise InvariantViolation(Invariant.IDX_CLUSTER, f"{kind}: a {mode} client's index {i} is not the "
                                     "master's", op="replay", site=f"shm/{kind}")


# -- a file system re-made under a mount (famfs issue #135) -----------------------------------

REMADE_ACTIONS = ("read", "lookup", "readdir", "get_fmap", "refresh")


def remade_fs_case(data: bytes) -> int:
    """A master makes a file system with 1-4 files; a client mounts it (maybe reading some files,
    so their fmaps are cached); another node runs mkfs on the same memory (a new file-system UUID,
    maybe the same device UUID and log geometry, maybe new files over the old files' pages);
    then the client acts in the order the input gives. Every action on the old mount must fail
    with ESTALE / FS-IDENTITY, never return a byte or a name; a fresh mount of the new file system
    reads the new bytes (DATA). The lookups of the fresh mount's reads are returned."""
    head = data[:12].ljust(12, b"\0")
    nfiles, cached, same_dev, same_log, overwrite = 1 + head[0] % 4, head[1], head[2] & 1, head[3] & 1, head[4] & 1
    order = [REMADE_ACTIONS[b % len(REMADE_ACTIONS)] for b in head[5:12]]
    memory = bytearray(DEV_SIZE)
    dev_uuid = new_uuid()
    image = Image.mkfs([memory], [DEV_SIZE], uuids=[dev_uuid], log_len=LOG_LEN, alloc_unit=AU, head_is_zero=True)
    old = [image.create(f"f{k}", AU * (1 + k % 2), data=pattern(f"old{k}", AU * (1 + k % 2))) for k in range(nfiles)]
    client = DaxDevice.in_memory(memory, "dax0.0", node="client")
    daemon = Daemon.mount(Resolver("client", [client]), primary=client, abi=ABI)
    for k, f in enumerate(old):
        ino = daemon.ino_of(f.path)
        if cached >> k & 1 and ino is not None and bytes(daemon.read(ino, 0, f.size)) != pattern(f"old{k}", f.size):
            raise InvariantViolation(Invariant.DATA, f"{f.path!r} misread before the re-make", op="read",
                                     site="remade/before")
    other = Image.mkfs([memory], [DEV_SIZE], uuids=[dev_uuid if same_dev else new_uuid()],
                       log_len=LOG_LEN if same_log else 2 * LOG_LEN, alloc_unit=AU)
    new = [other.create(f.path if overwrite else f"g{k}", f.size, data=pattern(f"new{k}", f.size))
           for k, f in enumerate(old)]
    for action in order:
        _stale_action(daemon, action, old)
    if daemon.kernel.fmaps or daemon.devices:
        raise InvariantViolation(Invariant.FS_IDENTITY, "the re-made mount keeps the old fmaps or index table",
                                 op="refresh", site="remade/state")
    fresh = Daemon.mount(Resolver("client", [DaxDevice.in_memory(memory, "dax0.0", node="client")]), abi=ABI)
    v = verdict(bytes(memory[:HEAD + LOG_LEN]), DEV_SIZE)
    exp = Expectation.of(v, "client", {"dax0.0": memory}, primary="dax0.0", abi=ABI)
    checker = exp.checker(site="remade")
    fresh.probe = fresh.kernel.probe = checker
    check_files(v.namespace, exp, daemon_reader(fresh), checker)
    if sorted(p for p, d in v.namespace if d[0] == "f") != sorted(f.path for f in new):
        raise InvariantViolation(Invariant.SHM_CONVERGE, "a fresh mount of the new file system does not show "
                                 "its files", op="replay", site="remade/fresh")
    return checker.counts.total


def _stale_action(daemon: Daemon, action: str, old: list[Any]) -> None:
    """One action on the old mount after the re-make: it must raise ESTALE / FS-IDENTITY."""
    ino = daemon.ino_of(old[0].path) or 0
    try:
        if action == "read":
            got: Any = daemon.read(ino, 0, old[0].size)
        elif action == "lookup":
            got = daemon.lookup(1, old[0].path)
        elif action == "readdir":
            got = daemon.readdir(1)
        elif action == "get_fmap":
            got = daemon.get_fmap(ino)
        else:
            got = daemon.refresh()
    except FamfsError as e:
        if e.invariant != Invariant.FS_IDENTITY or e.errno != errno.ESTALE:
            raise InvariantViolation(Invariant.FS_IDENTITY, f"{action} on the re-made mount failed with {e}, "
                                     "not ESTALE / FS-IDENTITY", op=action, site="remade/old-mount") from None
        return
    raise InvariantViolation(Invariant.FS_IDENTITY, f"{action} on the re-made mount answered "
                             f"({type(got).__name__}) instead of refusing", op=action, site="remade/old-mount")
