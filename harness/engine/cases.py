"""Case drivers: run famfs on one decoded input the way several targets need, and let the oracle judge.

`replay_case` replays a primary image and compares with the reference model. `node_case` goes
further: it mounts a daemon on one node's view of the devices (its own device names and order,
maybe with a device missing), replays through it, reads every file through the kernel side and
checks bytes and every index lookup. Both raise `InvariantViolation` for a finding and return
the number of lookups checked.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice, Resolver
from harness.famfs.errors import FamfsError
from harness.famfs.index import uuid_str
from harness.famfs.layout import Superblock
from harness.famfs.replay import replay
from harness.gen import decode
from harness.gen.corrupt import Corruption, corrupt
from harness.gen.spec import BufferPool, Built, build
from harness.oracle.case import check_reads, check_replay
from harness.oracle.lookups import LookupChecker
from harness.oracle.model import verdict


def replay_case(device: bytearray, size: int, *, check_crc: bool = True) -> int:
    """Replay `device` (bytes through the log end; real size `size`) and check it against the model."""
    expected = verdict(device, size, check_crc=check_crc)
    try:
        got: object = replay(device, device_size=size, check_crc=check_crc)
    except FamfsError as e:
        got = e
    check_replay(expected, got)
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


def node_case(built: Built, corruption: Corruption | None, view: NodeView, *, abi: str = "pull-devt") -> int:
    """Mount a daemon on `view` of `built`'s devices, check replay, reads and every lookup."""
    check_crc = corruption.check_crc if corruption else True
    bufs = built.devices
    order = view.order or tuple(range(len(bufs)))
    primary_buf = bufs[view.primary]
    sb = Superblock.decode(primary_buf)
    head_end = min(len(primary_buf), max(sb.log_offset + sb.log_len, 4096)) if sb.log_offset < len(primary_buf) else len(primary_buf)
    expected = verdict(primary_buf[:head_end], len(primary_buf), check_crc=check_crc)
    devices = [DaxDevice.in_memory(bufs[i], f"dax{k}.0", node=view.name)
               for k, i in enumerate(order) if i not in view.missing]
    names = {}
    for k, i in enumerate(order):
        if i not in view.missing:
            names[f"dax{k}.0"] = uuid_str(built.spec.devices[i].uuid)
    present = [i for i in order if i not in view.missing]
    primary = devices[present.index(view.primary)]
    checker = LookupChecker(expected={k: uuid_str(u) for k, (u, _) in enumerate(expected.table)},
                            names={view.name: names})
    try:
        daemon = Daemon.mount(Resolver(view.name, devices), abi=abi, probe=checker, primary=primary,
                              check_crc=check_crc)
    except FamfsError as e:
        check_replay(expected, e)
        return checker.check()
    assert daemon.state is not None
    check_replay(expected, daemon.state)
    by_uuid = {built.spec.devices[i].uuid: bufs[i] for i in order if i not in view.missing}
    index_bufs: Sequence[object] = [by_uuid.get(u) for u, _ in expected.table]
    return check_reads(daemon, expected, index_bufs, checker)


POOL = BufferPool()


def structured_case(data: bytes, *, family: str | None, min_devices: int = 1, wrong_primary: bool = False,
                    missing: bool = False) -> int:
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
