"""The harness finds each mission family's bug when it is planted in a copy of famfs.

Each test copies the package into a temporary tree, plants one bug by editing the copy's source
(main stays untouched), fuzzes the family's target from the copy until the first new signature
(at most 60 s), minimizes the input, and then checks the crasher: its repro command (on the
minimized input) fails (exit 1) on the buggy copy and passes (exit 0) on main.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import project

ROOT = project.root()
BUDGET = 60

PLANTS = {
    # family: (target, file, original text, planted text, the invariant the finding must name)
    "non-dense ADD_DAXDEV accepted": (
        "add_daxdev_order", "harness/famfs/index.py",
        "        if add.index != n:\n", "        if False:\n", "IDX-DENSE"),
    "defined-before-use check skipped": (      # undefined indices filtered out instead of refused
        "add_daxdev_order", "harness/famfs/replay.py",
        "        for ext in extents:\n"
        "            if not self.table.defined(ext.devindex):\n"
        "                raise EntryRejected.undefined_index(i, ext.devindex, len(self.table))\n"
        "        self.bounds(i, extents)\n",
        "        self.bounds(i, tuple(e for e in extents if self.table.defined(e.devindex)))\n",
        "IDX-DEFINED-BEFORE-USE"),
    "index resolved through the node's own device order": (
        "log_structured", "harness/famfs/daemon.py",
        "        self.devices = [self._resolve(d.index, d.uuid) for d in state.table]\n",
        "        self.devices = [self.host.devices[i] if i < len(self.host.devices) else None "
        "for i, d in enumerate(state.table)]\n", "IDX-LOOKUP"),
    "corrupted log: entry CRCs not checked": (
        "log_replay", "harness/famfs/replay.py",
        "        if check_crc and crc32(entry) != crc:\n",
        "        if False:\n", "LOG-PREFIX"),
    "discovery race: slot published without its write barrier": (
        "publish_order", "harness/famfs/daxtable.py",
        "        if self.use_barrier:\n", "        if False:\n", "TBL-PUBLISH"),
    "ADD_DAXDEV claiming index 0 not refused as IDX-PRIMARY": (
        "missing_primary", "harness/famfs/index.py",
        "        if add.index == 0:\n", "        if add.index == -1:\n", "IDX-PRIMARY"),
}


def buggy_copy(tmp: Path, file: str, old: str, new: str) -> Path:
    copy = tmp / "buggy"
    for part in ("harness", "targets", "tests/golden", "corpora"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / file
    text = path.read_text()
    assert text.count(old) == 1, f"plant site not found in {file}"
    path.write_text(text.replace(old, new))
    return copy


def cli(cwd: Path, *args: str, timeout: float = BUDGET + 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(PLANTS))
def test_planted_bug_is_found_and_reproduced(tmp_path, family):
    target, file, old, new, invariant = PLANTS[family]
    copy = buggy_copy(tmp_path, file, old, new)
    crashers = tmp_path / "crashers"
    run = cli(copy, "fuzz", target, "--max-time", str(BUDGET), "--stop-on-crash", "--crashers", str(crashers),
              "--seed", "1", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    assert doc["new_signatures"], doc
    folder = crashers / target / next(iter(doc["new_signatures"]))
    record = json.loads((folder / "crash.json").read_text())
    if invariant:
        assert invariant in record["title"], record["title"]
    print(f"\n{family}: found in {doc['seconds']} s after {doc['execs']} execs: {record['title']}")
    assert cli(copy, "minimize", str(folder), "--max-steps", "300").returncode == 0
    assert len((folder / "minimized").read_bytes()) <= len((folder / "input").read_bytes())
    assert cli(copy, "repro", str(folder), "--times", "3").returncode == 1      # still fails on the bug
    assert cli(ROOT, "repro", str(folder), "--times", "3").returncode == 0      # passes on main
    keep = os.environ.get("FAMFS_FUZZ_KEEP_PLANTED")                           # to refresh regress/
    if keep:
        dest = Path(keep) / target / "regress"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / f"planted-{folder.name}").write_bytes((folder / "input").read_bytes())
