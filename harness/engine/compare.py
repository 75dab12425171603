"""The registration-model comparison: the same cases under every kernel ABI generation.

Each generation gets the same stream of structured cases (a spec, two device orders, sometimes a
secondary missing on the node), run through `cases.node_case`: replay, every file read through
that generation's kernel side, every lookup checked. `backing-id` runs twice: passing log indices
through (what a daemon written for the index model does) and with the daemon translating each
index to the kernel's id in every GET_FMAP reply (the repair). The table reports, per
generation, how many cases broke each invariant, the smallest input that did, the registration
calls per case (GET_DAXDEV round trips or DAXDEV_OPEN / BACKING_OPEN ioctls), the per-node id map
the daemon must keep, and the time per case.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from harness.engine.cases import POOL, NodeView, node_case
from harness.engine.signature import Signature
from harness.famfs import wire
from harness.gen import decode
from harness.gen.spec import build

VARIANTS = [(name, False) for name in wire.ABIS] + [("backing-id", True)]


@dataclass
class AbiRow:
    abi: str
    cases: int = 0
    failing: int = 0
    by_invariant: dict[str, int] = field(default_factory=dict)
    smallest: dict[str, str] = field(default_factory=dict)        # invariant -> hex input
    lookups: int = 0
    registrations: int = 0
    id_map: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        n = max(self.cases, 1)
        return {"abi": self.abi, "cases": self.cases, "failing": self.failing, "by_invariant": self.by_invariant,
                "smallest_counterexample": self.smallest, "lookups_checked": self.lookups,
                "registrations_per_case": round(self.registrations / n, 2),
                "id_map_entries_per_case": round(self.id_map / n, 2),
                "ms_per_case": round(1000 * self.seconds / n, 2)}


def compare(cases: int = 300, seed: int = 0) -> list[AbiRow]:
    rng = random.Random(seed)
    inputs = [rng.randbytes(rng.randint(16, 160)) for _ in range(cases)]
    rows = []
    for name, translate in VARIANTS:
        row = AbiRow(name + (" (translated)" if translate else ""))
        stats: dict[str, int] = {}
        start = time.perf_counter()
        for data in inputs:
            c = decode.Choices(data)
            spec = decode.spec(c, min_devices=2)
            view = NodeView.draw(random.Random(decode.corruption_seed(c)), len(spec.devices), allow_missing=True)
            built = build(spec, POOL, data="stamp")
            row.cases += 1
            try:
                row.lookups += node_case(built, None, view, abi=name, translate_ids=translate, stats=stats)
            except Exception as e:  # noqa: BLE001 - every escape is a finding of this generation
                sig = Signature.from_exception(e)
                row.failing += 1
                row.by_invariant[sig.what] = row.by_invariant.get(sig.what, 0) + 1
                old = row.smallest.get(sig.what)
                if old is None or len(data) * 2 < len(old):
                    row.smallest[sig.what] = data.hex()
            finally:
                POOL.give_back()
        row.seconds = time.perf_counter() - start
        row.registrations, row.id_map = stats.get("registrations", 0), stats.get("id_map", 0)
        rows.append(row)
    return rows
