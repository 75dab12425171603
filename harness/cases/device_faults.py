"""The device-fault case: one device of a node misbehaves (the n-th open / map / read fails, a
range is poisoned, the device vanishes); files on it fail cleanly or read right, every other file
reads right, and once the fault is lifted every file reads (device_faults)."""
from __future__ import annotations

import random

from harness.famfs.devices import DaxDevice
from harness.gen import decode
from harness.gen.spec import build
from harness.oracle.lookups import Counts
from harness.cases.node import POOL, NodeView, node_case


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
