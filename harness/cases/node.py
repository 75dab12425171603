"""The node case: mount a daemon on one node's view of the devices (its own device names and order,
maybe a device missing or a secondary handed in as primary), replay through it, run fsck on what it
accepted (its answer must equal the model's), read every file through the kernel side and judge
the bytes and every index lookup with the oracle's one check (`Expectation`, `check_files`).
`structured_case` decodes a spec, builds and corrupts it first (log_structured, add_daxdev_order,
missing_primary). A finding is an `InvariantViolation`; the lookups judged are returned."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Mapping

from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid
from harness.gen import decode
from harness.gen.corrupt import Corruption, corrupt
from harness.gen.spec import BufferPool, Built, build
from harness.oracle.case import Expectation, check_files, check_replay, daemon_reader
from harness.oracle.crossfile import check_fsck
from harness.oracle.lookups import Counts, Why
from harness.oracle.model import verdict


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


def exp_translated(ids: dict[int, int], why: Mapping[int, Why]) -> dict[int, Why]:
    """The causes of failure keyed by kernel id (backing-id, translated): an index with no id
    (its device is missing here) goes out as id 0, which the kernel never hands out."""
    out = {ids[i]: w for i, w in why.items() if i in ids}
    out[0] = Why.REFUSED
    return out


class _Translated(dict):
    """index -> UUID seen through a daemon's log-index -> kernel-id map (backing-id, translated)."""

    def __init__(self, ids: dict[int, int], by_index: Mapping[int, Uuid]):
        super().__init__()
        self.ids, self.by_index = ids, by_index

    def get(self, kernel_id: int, default: object = None) -> object:
        index = next((i for i, k in self.ids.items() if k == kernel_id), None)
        return self.by_index.get(index, default) if index is not None else default


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
