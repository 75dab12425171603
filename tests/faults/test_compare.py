"""The registration-model comparison: the index-model generations hold, backing-id breaks
IDX-PRIMARY and IDX-LOOKUP when log indices pass through, and translation repairs it."""
from __future__ import annotations

from harness.engine.compare import compare


def test_compare_abi():
    rows = {r.abi: r for r in compare(cases=60, seed=3)}
    assert rows["pull-devt"].failing == 0 and rows["pull-name"].failing == 0
    broken = rows["backing-id"].by_invariant
    assert broken.get("IDX-PRIMARY", 0) > 0 and broken.get("IDX-LOOKUP", 0) > 0
    assert rows["backing-id (translated)"].failing == 0
    assert rows["backing-id (translated)"].as_dict()["id_map_entries_per_case"] > 0
    assert all(r.lookups > 0 for r in rows.values() if r.failing == 0)
