"""Case drivers: run famfs on one decoded input the way several targets need, and let the oracle judge.

`replay_case` replays a primary image and compares with the reference model (and, for an image it
accepts, fsck's cross-file answer with the model's). `node_case` goes
further: it mounts a daemon on one node's view of the devices (its own device names and order,
maybe with a device missing), replays through it, runs fsck on what it accepted (its cross-file
answer must equal the model's), reads every file through the kernel side and checks bytes and
every index lookup. Both raise `InvariantViolation` for a finding and return
the number of lookups checked.
"""
from __future__ import annotations

import errno
import random
from dataclasses import dataclass
from typing import Callable, Mapping

from harness.famfs import wire
from harness.famfs.daemon import Daemon, DaemonError
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid
from harness.famfs.invariants import Invariant
from harness.famfs.kernel import KernelError, KernelMount
from harness.famfs.replay import Replay, replay
from harness.gen import decode
from harness.gen.corrupt import Corruption, corrupt
from harness.gen.spec import BufferPool, Built, build, stamp
from harness.oracle.case import Expectation, check_files, check_replay, daemon_reader
from harness.oracle.crossfile import check_fsck
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker, Why
from harness.oracle.model import verdict
from harness.oracle import wire_rules
from harness.oracle.wire_rules import reasons as wire_reasons


def replay_case(device: bytearray, size: int, *, check_crc: bool = True) -> int:
    """Replay `device` (bytes through the log end; real size `size`) and check it against the model."""
    expected = verdict(device, size, check_crc=check_crc)
    try:
        got: object = replay(device, device_size=size, check_crc=check_crc)
    except FamfsError as e:
        got = e.with_traceback(None)        # a kept traceback's frames would hold the 10 MiB device
    check_replay(expected, got)             # in a cycle until the cyclic GC runs (log_replay's RSS)
    if isinstance(got, Replay):             # an accepted image goes through fsck too (the other
        sb = got.superblock                 # daxdevs are not on this node: no bounds to check there)
        check_fsck(expected, got, sb.log_offset + sb.log_len, [size])
    return 0


@dataclass(frozen=True, slots=True)
class NodeView:
    """How one node sees the devices: `order[k]` is the spec device it calls dax{k}.0; devices in
    `missing` are absent on this node; `primary` is the spec device handed to the daemon as its
    primary (normally 0; a secondary here is the 'secondary handed in as primary' case)."""

    name: str = "node0"
    order: tuple[int, ...] = ()
    missing: frozenset[int] = frozenset()
    primary: int = 0

    @classmethod
    def draw(cls, rng: random.Random, ndev: int, name: str = "node0", *, allow_missing: bool = False,
             allow_wrong_primary: bool = False) -> "NodeView":
        order = list(range(ndev))
        rng.shuffle(order)
        missing = frozenset(i for i in range(1, ndev) if allow_missing and rng.random() < 0.25)
        present = [i for i in range(ndev) if i not in missing]
        primary = rng.choice(present) if allow_wrong_primary and rng.random() < 0.3 else 0
        return cls(name, tuple(order), missing, primary)


def node_case(built: Built, corruption: Corruption | None, view: NodeView, *, abi: str = "pull-devt",
              translate_ids: bool = False, stats: dict[str, int] | None = None,
              fault: Callable[[list[DaxDevice]], int | None] | None = None,
              recover: bool = False) -> Counts:
    """Mount a daemon on `view` of `built`'s devices, check replay, reads and every lookup.
    `fault` arms a fault on one of the node's devices after the boot scan; with `recover` the
    fault is then lifted, the daemon replays, and every file must read (lazy discovery retried)."""
    check_crc = corruption.check_crc if corruption else True
    bufs = built.devices
    order = view.order or tuple(range(len(bufs)))
    primary_buf = bufs[view.primary]
    expected = verdict(memoryview(primary_buf)[:decode.head_end(primary_buf)], len(primary_buf), check_crc=check_crc)
    devices = [DaxDevice.in_memory(bufs[i], f"dax{k}.0", node=view.name)
               for k, i in enumerate(order) if i not in view.missing]
    present = [i for i in order if i not in view.missing]
    primary = devices[present.index(view.primary)]
    host = Resolver(view.name, devices)                     # the node scanned its devices at boot...
    faulty = fault(devices) if fault else None              # ...then one of them misbehaves
    by_name = {d.name: bufs[i] for d, i in zip(devices, present, strict=True)}
    exp = Expectation.of(expected, view.name, by_name, primary=primary.name, abi=abi,
                         faulty={devices[faulty].name} if faulty is not None else ())
    checker = exp.checker(site=abi + (" translated" if translate_ids else ""))
    try:
        daemon = Daemon.mount(host, abi=abi, probe=checker, primary=primary,
                              check_crc=check_crc, translate_ids=translate_ids)
    except FamfsError as e:
        if faulty is not None and devices[faulty] is primary:
            checker.allow(view.name, 0, Why.FAULT)
            checker.check()                                 # the primary's own fault: a clean refusal
            return checker.counts
        check_replay(expected, e)
        checker.check()
        return checker.counts
    assert daemon.state is not None
    check_replay(expected, daemon.state)
    sb = daemon.state.superblock            # every accepted image goes through fsck too
    check_fsck(expected, daemon.state, sb.log_offset + sb.log_len,
               [len(b) if b is not None else None for b in exp.bufs])
    if translate_ids:                       # the kernel's ids are not indices: map them back
        checker.expected = _Translated(daemon.kernel_ids, checker.expected)
        checker.justify = {view.name: exp_translated(daemon.kernel_ids, exp.why)}
    try:
        check_files(expected.namespace, exp, daemon_reader(daemon), checker)
        if recover and faulty is not None:
            devices[faulty].clear_faults()
            host.rescan()
            daemon.refresh()
            exp = Expectation.of(expected, view.name, by_name, primary=primary.name, abi=abi)
            checker.clear(view.name)
            for k, why in exp.why.items():
                checker.allow(view.name, k, why)
            check_files(expected.namespace, exp, daemon_reader(daemon), checker)
        return checker.counts
    finally:
        if stats is not None:
            stats["registrations"] = stats.get("registrations", 0) + daemon.kernel.registrations
            stats["id_map"] = stats.get("id_map", 0) + len(daemon.kernel_ids)


def exp_translated(ids: dict[int, int], why: Mapping[int, Why]) -> dict[int, Why]:
    """The causes of failure keyed by kernel id (backing-id, translated): an index with no id
    (its device is missing here) goes out as id 0, which the kernel never hands out."""
    out = {ids[i]: w for i, w in why.items() if i in ids}
    out[0] = Why.REFUSED
    return out


POOL = BufferPool()


def structured_case(data: bytes, *, family: str | None, min_devices: int = 1, wrong_primary: bool = False,
                    missing: bool = False) -> Counts:
    """Decode a spec, build it, corrupt it with `family` (or not at all, one case in four),
    draw a node view, and run `node_case`."""
    c = decode.Choices(data)
    spec = decode.spec(c, min_devices=min_devices)
    rng = random.Random(decode.corruption_seed(c))
    corrupted = c.int(0, 3) != 0
    built = build(spec, POOL, data="stamp")
    try:
        corruption = corrupt(built.primary, rng, family) if corrupted else None
        view = NodeView.draw(rng, len(spec.devices), allow_missing=missing, allow_wrong_primary=wrong_primary)
        return node_case(built, corruption, view)
    finally:
        POOL.give_back()


class _WireServer:
    """A daemon stand-in for `wire_case`: replies `reply` to GET_FMAP, and GET_DAXDEV correctly for
    the node's present devices."""

    def __init__(self, reply: bytes, devices: list[DaxDevice], abi: wire.Abi):
        self.reply, self.devices, self.abi = reply, devices, abi

    def get_fmap(self, nodeid: int) -> bytes:
        return self.reply

    def get_daxdev(self, index: int) -> bytes:
        if index >= len(self.devices):
            raise DaemonError.undefined(index, len(self.devices))
        d = self.devices[index]
        return wire.encode_daxdev_out(wire.DaxdevReply(index, d.name.encode(), d.devno), self.abi)


_WIRE_DEVICES: list[bytearray] = []


def wire_case(abi_byte: int, reply: bytes) -> Counts:
    """The kernel side parses `reply` as a GET_FMAP reply under ABI generation `abi_byte % 4`;
    acceptance must match oracle.wire_rules; a read at each of a few offsets must return the bytes
    the reply's extents give (computed by oracle.wire_rules from the raw reply, read off the
    stamped devices) or fail with the clean errno of the first piece that cannot be read (an
    index no device answers, a strip too short, past a device's end, a push-fd file marked bad);
    every lookup is judged (under backing-id, by the kernel ids the three opens got)."""
    gen = list(wire.ABIS.values())[abi_byte % len(wire.ABIS)]
    if not _WIRE_DEVICES:
        for i in range(3):
            buf = bytearray(16 << 20)
            stamp(buf, 0, len(buf), 0x1111 * (i + 1))
            _WIRE_DEVICES.append(buf)
    devices = [DaxDevice.in_memory(b, f"dax{i}.0", node="w") for i, b in enumerate(_WIRE_DEVICES)]
    uuids = {i: Uuid(i.to_bytes(16, "big")) for i in range(3)}
    slot_of = {i: i for i in range(3)}                      # wire index -> which device's slot
    if gen.registration == wire.Registration.BACKING_ID:
        slot_of = {i + 1: i for i in range(3)}              # ids 1, 2, 3 in open order; 0 never
    checker = LookupChecker(expected={k: uuids[i] for k, i in slot_of.items()},
                            names={"w": {d.name: uuids[i] for i, d in enumerate(devices)}}, site=f"wire/{gen.name}")
    kernel = KernelMount(_NoUuidHost("w", devices), _WireServer(reply, devices, gen), gen, probe=checker)
    kernel.mount()
    for i, d in enumerate(devices):
        if gen.registration == wire.Registration.PUSH_FD:
            kernel.daxdev_open(d, i)
        elif gen.registration == wire.Registration.BACKING_ID:
            kernel.backing_open(d)
    must_refuse = wire_reasons(reply, gen)
    try:
        kf = kernel.fmap(5)
    except KernelError as e:
        if not must_refuse:
            raise InvariantViolation(Invariant.FMAP_SHAPE, f"{gen.name} kernel refused a valid reply: {e}",
                                     op="fmap", site=f"wire/{gen.name}") from None
        checker.check()
        return checker.counts
    if must_refuse:
        raise InvariantViolation(Invariant.FMAP_SHAPE, f"{gen.name} kernel accepted a reply it must refuse: "
                                                       f"{', '.join(must_refuse)}", op="fmap", site=f"wire/{gen.name}")
    bad = gen.registration == wire.Registration.PUSH_FD and any(k not in slot_of
                                                                for k in wire_rules.file_indices(reply))
    size = kf.file_size
    form = "simple" if kf.message.ext_type == wire.EXT_SIMPLE else "interleave"
    for off in sorted({0, 1, size // 2, max(size - 1, 0), 4096, 2 << 20, 5 << 20}):
        if off < size:
            _wire_read(kernel, f"{gen.name}/{form}", reply, off, slot_of, bad, checker)
    checker.check()
    return checker.counts


def _wire_read(kernel: KernelMount, gen: str, reply: bytes, off: int, slot_of: dict[int, int], bad: bool,
               checker: LookupChecker) -> None:
    """One read of `wire_case`, judged against the oracle's own runs of the reply (its lookups
    first, so a wrong device is named as such before its bytes)."""
    site = f"wire/{gen}"
    want: list[bytes] = []
    allowed: frozenset[int] = frozenset()
    if bad:                                                 # push-fd: an index never pushed
        allowed = frozenset({errno.EIO})
    else:
        for run in wire_rules.read_runs(reply, off, 4096):
            if run is None or run[0] not in slot_of:       # unmapped, or no device answers the index
                allowed = frozenset({errno.EIO})
                break
            buf = _WIRE_DEVICES[slot_of[run[0]]]
            if run[1] + run[2] > len(buf):                 # past the device's end
                allowed = frozenset({errno.ERANGE, errno.EIO})
                break
            want.append(bytes(buf[run[1]:run[1] + run[2]]))
    try:
        got = kernel.read(5, off, 4096)
    except FamfsError as e:
        checker.check()
        if e.errno not in allowed:
            why = "every piece of it is mapped on a present device" if not allowed else f"not with errno {e.errno}"
            raise InvariantViolation(Invariant.DATA if not allowed else Invariant.IDX_LOOKUP,
                                     f"{gen}: read at {off:#x} failed ({e}): {why}", op="read", site=site) from None
        return
    checker.check()
    if allowed:
        raise InvariantViolation(Invariant.IDX_LOOKUP, f"{gen}: read at {off:#x} returned {len(got)} bytes, but a "
                                                       "piece of it cannot be read (unmapped or no device)",
                                 op="read", site=site)
    expect = b"".join(want)
    if got != expect:
        raise InvariantViolation(Invariant.DATA, f"{gen}: read at {off:#x}: {len(got)} bytes differ from the "
                                                 f"{len(expect)} the reply's extents give", op="read", site=site)


@dataclass
class _NoUuidHost:
    """The kernel's view of the node's /dev for `wire_case`: by name and by dev_t only."""

    node: str
    devices: list[DaxDevice]

    def by_name(self, name: str) -> DaxDevice | None:
        return next((d for d in self.devices if d.name == name), None)

    def by_devno(self, devno: int) -> DaxDevice | None:
        return next((d for d in self.devices if d.devno == devno), None)


class _Translated(dict):
    """index -> UUID seen through a daemon's log-index -> kernel-id map (backing-id, translated)."""

    def __init__(self, ids: dict[int, int], by_index: Mapping[int, Uuid]):
        super().__init__()
        self.ids, self.by_index = ids, by_index

    def get(self, kernel_id: int, default: object = None) -> object:
        index = next((i for i, k in self.ids.items() if k == kernel_id), None)
        return self.by_index.get(index, default) if index is not None else default


def publish_order_case(data: bytes, *, barrier: bool = True, valid_first: bool = False) -> Counts:
    """The daxdev table's publish steps against readers, on weak memory, schedule from `data`:
    a reader that sees a valid slot must see all of it (TBL-PUBLISH); a lookup may fail only
    while the slot is being published."""
    from harness.faults.races import PUBLISH_EXPECTED, publish_case
    from harness.faults.schedule import byte_chooser
    checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1],
                            justify={"n": {1: Why.PUBLISHING}}, site="race/publish")
    c = decode.Choices(data[:2])
    publish_case(byte_chooser(data[2:]), checker, readers=c.int(1, 3), reads=c.int(1, 4), barrier=barrier,
                 valid_first=valid_first)
    checker.check()
    return checker.counts


def discovery_race_case(data: bytes, *, barrier: bool = True, locking: bool = True) -> Counts:
    """Readers first-touching undiscovered indices through lazy discovery, one maybe failing its
    GET_DAXDEV: lookups right or cleanly failing (only the failing reader's index may fail),
    reads returning the right device's bytes. An odd first byte runs teardown against readers
    instead (the table's lock; lookups may fail only because of the teardown)."""
    from harness.faults.races import DISCOVERY_EXPECTED, PUBLISH_EXPECTED, FakeDev, discovery_case, teardown_case
    from harness.faults.schedule import byte_chooser
    if data[:1] and data[0] & 1:
        checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1],
                                justify={"n": {1: Why.TEARDOWN}}, site="race/teardown")
        teardown_case(byte_chooser(data[2:]), checker, readers=1 + (data[1] % 3 if len(data) > 1 else 0),
                      locking=locking)
        checker.check()
        return checker.counts
    c = decode.Choices(data[:4])
    n = c.int(2, 3)
    files = tuple(c.int(1, 3) for _ in range(n))
    fail_for = c.pick([None, None, "cpu1", "cpu2"])
    failing = {files[int(fail_for[3:]) - 1]: Why.FAULT} if fail_for and int(fail_for[3:]) <= n else {}
    checker = LookupChecker(expected=DISCOVERY_EXPECTED[0], names=DISCOVERY_EXPECTED[1], justify={"n": failing},
                            site="race/discovery")
    r = discovery_case(byte_chooser(data[4:]), checker, files=files, fail_for=fail_for, barrier=barrier)
    checker.check()
    for k, index in enumerate(files):
        kind, value = r.outcomes.get(f"cpu{k + 1}", ("error", 0))
        if kind == "ok" and value != FakeDev(f"dax{index}.0", 0x0F00 + index).read(0, 4096):
            raise InvariantViolation(Invariant.DATA, f"cpu{k + 1} read another device's bytes for index {index}",
                                     op="read", site="race/discovery")
        if kind == "error" and (value != errno.EIO or fail_for != f"cpu{k + 1}"):
            raise InvariantViolation(Invariant.IDX_LOOKUP, f"cpu{k + 1}: read of index {index} failed with errno "
                                                           f"{value}; only a clean EIO of the reader whose "
                                                           "GET_DAXDEV fails is allowed", op="read",
                                     site="race/discovery")
    return checker.counts


def log_tail_case(data: bytes, *, counter_first: bool = False, check_crc: bool = True) -> int:
    """A master appends a short workload while a client replays every state the weak memory can
    show it (faults.logtail). The client must never apply a partial entry, never see next_index
    cover an incomplete entry (LOG-PREFIX), and must replay everything once all is visible."""
    from harness.famfs.image import Image
    from harness.famfs.layout import AddDaxdev, EntryType, FileMeta, Mkdir, SimpleExtent, SimpleFmap
    from harness.faults.logtail import apply, visible_states
    c = decode.Choices(data)
    dev = POOL.take(24 << 20)
    try:
        image = Image.mkfs([dev], log_len=16 << 10)
        image.log.counter_first = counter_first
        committed: list[str] = []
        for k in range(c.int(1, 3)):
            kind = c.int(0, 2)
            op: tuple[EntryType, Mkdir | FileMeta | AddDaxdev]
            if kind == 0:
                op = (EntryType.MKDIR, Mkdir(0, 0, 0o755, f"d{k}".encode()))
            elif kind == 1:
                op = (EntryType.FILE, FileMeta(4096, 2, 0, 0, 0o644, f"f{k}".encode(),
                                               SimpleFmap.of([SimpleExtent(0, (4 + 2 * k) << 20, 2 << 20)])))
            else:
                op = (EntryType.ADD_DAXDEV, AddDaxdev(16 << 20, Uuid(bytes([k + 1]) * 16), len(committed) + 1))
            program = image.log.stores(*op)
            head = bytes(dev[:(2 << 20) + (16 << 10)])
            for state in visible_states(program):
                seen = apply(bytearray(head), state)
                try:
                    r = replay(seen, device_size=len(dev), check_crc=check_crc)
                except FamfsError as e:
                    raise InvariantViolation(Invariant.LOG_HEADER,
                                             f"append {k}: mid-append state unusable: {e}") from None
                applied = [e for e in range(r.entries_read) if not any(x.entry == e for x in r.rejections)]
                if r.stopped_at is not None:
                    raise InvariantViolation(Invariant.LOG_PREFIX, f"append {k}: the reader saw next_index cover an "
                                                                   f"incomplete entry {r.stopped_at}")
                names = sorted([*r.namespace.dirs, *r.namespace.files])
                body = op[1]
                allowed = ([committed, sorted(committed + [body.relpath.decode()])]
                           if not isinstance(body, AddDaxdev) else [committed])
                if names not in allowed or len(applied) > k + 1:
                    raise InvariantViolation(Invariant.LOG_PREFIX, f"append {k}: reader applied {names}, "
                                                                   f"committed {committed}")
            image.log.append(*op)
            if not isinstance(op[1], AddDaxdev):
                committed = sorted(committed + [op[1].relpath.decode()])
        final = replay(dev, check_crc=check_crc)
        if sorted([*final.namespace.dirs, *final.namespace.files]) != committed:
            raise InvariantViolation(Invariant.LOG_PREFIX, "the complete log does not replay every entry")
        return 0
    finally:
        POOL.give_back()


def device_fault_case(data: bytes) -> Counts:
    """A node where one device misbehaves (fail the n-th open / map / read, poison a range, vanish):
    files on it fail cleanly or read right; every other file reads right (syzkaller fail_nth).
    In one case of two the fault is then lifted and the daemon replays: every file must read
    (a lookup that failed while the fault was in force is retried, not cached)."""
    c = decode.Choices(data)
    spec = decode.spec(c, min_devices=2)
    rng = random.Random(decode.corruption_seed(c))
    which, kind, n = c.int(0, len(spec.devices) - 1), c.pick(["open", "map", "read", "poison", "vanish"]), c.int(1, 6)

    def arm(devices: list[DaxDevice]) -> int:
        k = which % len(devices)
        dev = devices[k]
        if kind == "poison":
            start = c.int(0, dev.size // 4096 - 1) * 4096
            dev.add_poison(start, start + c.int(1, 512) * 4096)
        elif kind == "vanish":
            dev.vanished = True
        else:
            dev.fail_nth(kind, n)
        return k

    recover = c.int(0, 1) == 1              # then lift the fault: everything must read again
    built = build(spec, POOL, data="stamp")
    try:
        view = NodeView.draw(rng, len(spec.devices))
        return node_case(built, None, view, fault=arm, recover=recover)
    finally:
        POOL.give_back()
