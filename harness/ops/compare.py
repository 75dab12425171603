"""The registration-model comparison: the same cases under every kernel ABI generation.

Each generation gets the same stream of structured cases (a spec, two device orders, sometimes a
secondary missing on the node), run through `cases.node_case`: replay, every file read through
that generation's kernel side, every lookup checked. `backing-id` runs twice: passing log indices
through (what a daemon written for the index model does) and with the daemon translating each
index to the kernel's id in every GET_FMAP reply (the repair). The table reports, per
generation, how many cases broke each invariant, the smallest input that did, shrunk by
`minimize.minimize_bytes` while the same invariant still breaks under the same generation and
described as the famfs it decodes to (the minimal counterexample), the registration calls per
case (GET_DAXDEV round trips or DAXDEV_OPEN / BACKING_OPEN ioctls), the per-node id map the daemon
must keep, and the time per case.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from harness.cases.node import POOL, NodeView, node_case
from harness.engine.minimize import minimize_bytes
from harness.engine.signature import Signature
from harness.famfs import wire
from harness.gen import decode
from harness.gen.spec import AddDaxdev, Built, Mkdir, build

VARIANTS = [(name, False) for name in wire.ABIS] + [("backing-id", True)]


@dataclass
class AbiRow:
    abi: str
    cases: int = 0
    failing: int = 0
    by_invariant: dict[str, int] = field(default_factory=dict)
    smallest: dict[str, str] = field(default_factory=dict)        # invariant -> hex input
    minimal: dict[str, dict[str, Any]] = field(default_factory=dict)  # invariant -> shrunk input + its famfs
    lookups: int = 0
    registrations: int = 0
    id_map: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        n = max(self.cases, 1)
        return {"abi": self.abi, "cases": self.cases, "failing": self.failing, "by_invariant": self.by_invariant,
                "smallest_counterexample": self.smallest, "minimal_counterexample": self.minimal,
                "lookups_checked": self.lookups,
                "registrations_per_case": round(self.registrations / n, 2),
                "id_map_entries_per_case": round(self.id_map / n, 2),
                "ms_per_case": round(1000 * self.seconds / n, 2)}


def compare(cases: int = 300, seed: int = 0, *, shrink_steps: int = 300) -> list[AbiRow]:
    rng = random.Random(seed)
    inputs = [rng.randbytes(rng.randint(16, 160)) for _ in range(cases)]
    rows = []
    for name, translate in VARIANTS:
        row = AbiRow(name + (" (translated)" if translate else ""))
        stats: dict[str, int] = {}
        start = time.perf_counter()
        for data in inputs:
            row.cases += 1
            lookups, broken = run_case(data, name, translate, stats)
            row.lookups += lookups
            if broken is None:
                continue
            row.failing += 1
            row.by_invariant[broken] = row.by_invariant.get(broken, 0) + 1
            old = row.smallest.get(broken)
            if old is None or len(data) * 2 < len(old):
                row.smallest[broken] = data.hex()
        row.seconds = time.perf_counter() - start
        row.registrations, row.id_map = stats.get("registrations", 0), stats.get("id_map", 0)
        for what, hexdata in sorted(row.smallest.items()):
            def still_breaks(d: bytes, w: str = what, n: str = name, t: bool = translate) -> bool:
                return run_case(d, n, t, {})[1] == w
            small = minimize_bytes(bytes.fromhex(hexdata), still_breaks, max_steps=shrink_steps).value
            row.minimal[what] = {"input": small.hex(), "famfs": describe(small)}
        rows.append(row)
    return rows


def _decoded(data: bytes) -> tuple[Built, NodeView]:
    c = decode.Choices(data)
    spec = decode.spec(c, min_devices=2)
    view = NodeView.draw(random.Random(decode.corruption_seed(c)), len(spec.devices), allow_missing=True)
    return build(spec, POOL, data="stamp"), view


def run_case(data: bytes, abi: str, translate: bool, stats: dict[str, int]) -> tuple[int, str | None]:
    """One case under one generation: (lookups checked, the invariant it broke or None)."""
    built, view = _decoded(data)
    try:
        return node_case(built, None, view, abi=abi, translate_ids=translate, stats=stats), None
    except Exception as e:  # noqa: BLE001 - every escape is a finding of this generation
        return 0, Signature.from_exception(e).what
    finally:
        POOL.give_back()


def describe(data: bytes) -> str:
    """The famfs a case input decodes to, in one line: the log's entries as built (ops the builder
    could not place left out) and how the node names its devices."""
    built, view = _decoded(data)
    try:
        ops = []
        for op in built.spec.ops:
            if op in built.skipped:
                continue
            if isinstance(op, AddDaxdev):
                ops.append(f"ADD_DAXDEV dev{op.device}")
            elif isinstance(op, Mkdir):
                ops.append(f"mkdir {op.path}")
            else:
                where = f"strips on {list(op.strips)}" if op.strips else f"on index {op.devindex}"
                ops.append(f"file {op.path} {op.size} B {where}")
        order = view.order or tuple(range(len(built.devices)))
        names = ", ".join(f"dax{k}.0=dev{i}" for k, i in enumerate(order) if i not in view.missing)
        gone = f"; dev{', dev'.join(map(str, sorted(view.missing)))} missing" if view.missing else ""
        return (f"{len(built.devices)} devices (dev0 primary); log: {'; '.join(ops) or 'no entries'}; "
                f"node sees {names}{gone}")
    finally:
        POOL.give_back()
