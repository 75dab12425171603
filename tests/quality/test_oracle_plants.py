"""The stricter oracle finds each class of bug it closed, planted in a copy of famfs, by search.

Same mechanism as test_planted.py: copy the package, edit one site, fuzz the target from the
copy until the first new signature (at most 60 s), minimize, and check that repro fails on the
copy and passes on main. What this file adds: each plant must be out of the seeds' reach, so the
test measures the search, not the corpus: the target's whole corpus is first replayed on the
buggy copy (`regress --all`) and must give no finding, and the finding must come after more
executions than the corpus holds. Each test prints the target, the executions and the seconds
to the finding.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.quality.test_planted import BUDGET, ROOT, buggy_copy, cli

PLANTS = {
    # hole: (target, file, original text, planted text, what the finding's title must name)
    "failed discovery cached, never retried": (
        "device_faults", "harness/famfs/kernel.py",
        "        if view is not None and not view.valid and not view.dax_err and self._pulls:\n",
        "        if view is not None and not view.valid and not view.dax_err and self._pulls and index < 3:\n",
        "IDX-LOOKUP"),
    "a present device's lookup fails (lost install race cached as dax_err)": (
        "discovery_race", "harness/famfs/kernel.py",
        "        rc = yield from self.table.install_steps(index, device.devno, device, device.name)\n",
        "        if self.table.mem.load((index, \"devno\"), 0) and self.table.mem.load((index, \"name\")) is None:\n"
        "            self.table.mark_dax_err(index)\n"
        "            return None\n"
        "        rc = yield from self.table.install_steps(index, device.devno, device, device.name)\n",
        "IDX-LOOKUP"),
    "race path: the lookup trusts a slot's dev_t instead of its valid flag": (
        "publish_order", "harness/famfs/kernel.py",
        "        elif not view.valid:\n",
        "        elif not view.valid and not view.devno:\n",
        "TBL-PUBLISH"),
    "fmap_wire: an extent's device offset taken as PMD-aligned (true only before PAGE alignment)": (
        "fmap_wire", "harness/famfs/kernel.py",
        "                    return Run(e.devindex, e.offset + offset, e.len - offset)\n",
        "                    return Run(e.devindex, (e.offset & ~0x1FFFFF) + offset, e.len - offset)\n",
        "DATA"),
    "an undefined index resolves (the slot index kept in a 4-bit field: it wraps at 16)": (
        "fmap_wire", "harness/famfs/daxtable.py",
        "        if not 0 <= index < self.nslots:\n            return None\n        while self.locking",
        "        if not 0 <= index < self.nslots:\n            return None\n        index &= 0xF\n"
        "        while self.locking",
        "IDX-LOOKUP at lookup"),
}


def corpus_size(target: str) -> int:
    return sum(1 for p in (ROOT / "corpora" / target).rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("hole", list(PLANTS))
def test_oracle_plant_is_found_by_search(tmp_path, hole):
    target, file, old, new, named = PLANTS[hole]
    copy = buggy_copy(tmp_path, file, old, new)
    seeds = cli(copy, "regress", target, "--all", "--json")
    doc = json.loads(seeds.stdout)
    assert not doc["failures"], f"a seed triggers the plant: {doc['failures'][:2]}"
    crashers = tmp_path / "crashers"
    run = cli(copy, "fuzz", target, "--max-time", str(BUDGET), "--stop-on-crash", "--crashers", str(crashers),
              "--seed", "1", "--json")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    doc = json.loads(run.stdout)
    assert doc["new_signatures"], doc
    assert doc["execs"] > corpus_size(target), (doc["execs"], corpus_size(target))
    folder = crashers / target / next(iter(doc["new_signatures"]))
    record = json.loads((folder / "crash.json").read_text())
    assert named in record["title"], record["title"]
    print(f"\n{hole}: {target}: found after {doc['execs']} execs in {doc['seconds']} s "
          f"(corpus {corpus_size(target)}): {record['title']}")
    assert cli(copy, "minimize", str(folder), "--max-steps", "300").returncode == 0
    assert cli(copy, "repro", str(folder), "--times", "3").returncode == 1      # still fails on the bug
    assert cli(ROOT, "repro", str(folder), "--times", "3").returncode == 0      # passes on main
