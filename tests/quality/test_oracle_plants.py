"""The stricter oracle finds each class of bug it closed, planted in a copy of famfs, by search.

Same mechanism as test_planted.py: copy the package, edit one site, fuzz the target from the
copy until the first new signature (at most 60 s), minimize, and check that repro fails on the
copy and passes on main. What this file adds: each plant must be out of the seeds' reach, so the
test measures the search, not the corpus: the target's whole corpus is first replayed on the
buggy copy (`regress --all`) and must give no finding, and the finding must come after more
executions than the corpus holds. Each test prints the target, the executions and the seconds
to the finding.

The two holes this file once left unmeasured by search (a bug in the kernel side's lookup path
that only a race shows; a daemon handler's internal error through the FUSE mount) have their
search-measured plants in test_oracle_search_plants.py. The plants tried here before (a lookup
trusting a slot's dev_t instead of its valid flag; attributes built from a table of the modes
famfs creates) were reached by a seed. `test_a_mount_handler_error_is_its_own_finding` still
checks the channel itself on such a seed: the child's traceback comes back through the probe log
and the finding is filed as `internal-error` with the famfs frames of the child.

`test_two_data_bugs_get_two_folders` plants two DATA bugs at once (one in the simple-extent
resolution, one in the strip arithmetic) and runs one input for each: two signatures, two folders.
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
    "a present device's lookup fails (another CPU's filled, not yet valid slot cached as a failed install)": (
        "discovery_race", "harness/famfs/kernel.py",
        "        rc = yield from self.table.install_steps(index, device.devno, device, device.name)\n",
        "        if self.table.mem.load((index, \"name\")) is not None and not self.table.mem.load((index, \"valid\"), "
        "False):\n"
        "            self.table.mark_dax_err(index)\n"
        "            return None\n"
        "        rc = yield from self.table.install_steps(index, device.devno, device, device.name)\n",
        "IDX-LOOKUP"),
    "a half-published slot is read (no wmb when another CPU publishes the slot too: three CPUs)": (
        "discovery_race", "harness/famfs/daxtable.py",
        "        if self.valid_first:\n"
        "            mem.store((index, \"valid\"), True)\n"
        "            yield f\"store slot {index} valid (first: fault)\"\n"
        "        for f, v in zip(FIELDS, (devno, device, name), strict=True):\n"
        "            mem.store((index, f), v)\n"
        "            yield f\"store slot {index} {f}\"\n"
        "        if self.use_barrier:\n",
        "        racing = mem.load((index, \"devno\"), 0) != 0     # its wmb is taken to order these fields too\n"
        "        if self.valid_first:\n"
        "            mem.store((index, \"valid\"), True)\n"
        "            yield f\"store slot {index} valid (first: fault)\"\n"
        "        for f, v in zip(FIELDS, (devno, device, name), strict=True):\n"
        "            mem.store((index, f), v)\n"
        "            yield f\"store slot {index} {f}\"\n"
        "        if self.use_barrier and not racing:\n",
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


def found_by_search(tmp_path: Path, plant: tuple[str, str, str, str], label: str,
                    budget: int = BUDGET) -> tuple[dict, dict]:
    """Plant (target, file, original, planted), check no seed triggers it, fuzz (at most `budget` s) to the first
    finding, check it came after more executions than the corpus holds, minimize, repro on both
    trees; prints the target, executions and seconds. Returns the run's JSON and crash.json."""
    target, file, old, new = plant
    copy = buggy_copy(tmp_path, file, old, new)
    seeds = cli(copy, "regress", target, "--all", "--json")
    doc = json.loads(seeds.stdout)
    assert not doc["failures"], f"a seed triggers the plant: {doc['failures'][:2]}"
    crashers = tmp_path / "crashers"
    run = cli(copy, "fuzz", target, "--max-time", str(budget), "--stop-on-crash", "--crashers", str(crashers),
              "--seed", "1", "--json")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    doc = json.loads(run.stdout)
    assert doc["new_signatures"], doc
    assert doc["execs"] > corpus_size(target), (doc["execs"], corpus_size(target))
    folder = crashers / target / next(iter(doc["new_signatures"]))
    record = json.loads((folder / "crash.json").read_text())
    print(f"\n{label}: {target}: found after {doc['execs']} execs in {doc['seconds']} s "
          f"(corpus {corpus_size(target)}): {record['title']}")
    assert cli(copy, "minimize", str(folder), "--max-steps", "300").returncode == 0
    assert cli(copy, "repro", str(folder), "--times", "3").returncode == 1      # still fails on the bug
    assert cli(ROOT, "repro", str(folder), "--times", "3").returncode == 0      # passes on main
    return doc, record


@pytest.mark.slow
@pytest.mark.parametrize("hole", list(PLANTS))
def test_oracle_plant_is_found_by_search(tmp_path, hole):
    target, file, old, new, named = PLANTS[hole]
    _, record = found_by_search(tmp_path, (target, file, old, new), hole)
    assert named in record["title"], record["title"]


INTERNAL = ("harness/famfs/daemon.py",
            "            self._before_serving(inode.file)\n        return inode.attr\n",
            "            self._before_serving(inode.file)\n"
            "        perm = {0o600: 0o600, 0o755: 0o755, 0o444: 0o444, 0o700: 0o700}\n"
            "        return replace(inode.attr, mode=(inode.attr.mode & ~0o7777) | perm[inode.attr.mode & 0o7777])\n")


@pytest.mark.slow
def test_a_mount_handler_error_is_its_own_finding(tmp_path):
    from tests.common.fuse import REASON
    if REASON:
        pytest.skip(f"needs FUSE: {REASON}")
    copy = buggy_copy(tmp_path, *INTERNAL)
    doc = json.loads(cli(copy, "regress", "mount_e2e", "--json").stdout)
    sigs = {f["signature"] for f in doc["failures"]}
    assert sigs and all(s.startswith("internal-error KeyError at lookup in harness/famfs/daemon.py:lookup")
                        and "harness/famfs/fuse.py:" in s for s in sigs), sigs
    assert not json.loads(cli(ROOT, "regress", "mount_e2e", "--json").stdout)["failures"]


TWO_DATA = [
    ("harness/famfs/kernel.py",
     "                    return Run(e.devindex, e.offset + offset, e.len - offset)\n",
     "                    return Run(e.devindex, (e.offset & ~0x1FFFFF) + offset, e.len - offset)\n"),
    ("harness/famfs/kernel.py",
     "                dev_off = (c // ie.nstrips) * ie.chunk_size + within\n",
     "                dev_off = (c >> (ie.nstrips.bit_length() - 1)) * ie.chunk_size + within\n"),
]

RUN_TWO = """
import json, sys
from pathlib import Path
from harness.engine.crashstore import CrashStore
from harness.engine.registry import load
from harness.engine.runner import CaseRunner
from harness.famfs import wire
MiB = 1 << 20
gens = list(wire.ABIS)
simple = wire.FmapMessage(0, wire.EXT_SIMPLE, 8192, extents=(wire.WireSimple(1, 4 * MiB + 8192, 2 * MiB),))
strips = tuple(wire.WireSimple(i, 4 * MiB, 4 * MiB) for i in range(3))
inter = wire.FmapMessage(0, wire.EXT_INTERLEAVE, 6 * MiB,
                         interleaved=(wire.WireInterleave(3, 2 * MiB, 6 * MiB, strips),))
inputs = [bytes([gens.index("push-fd")]) + wire.encode_fmap(simple, wire.abi("push-fd")),
          bytes([gens.index("pull-devt")]) + wire.encode_fmap(inter, wire.abi("pull-devt"))]
runner = CaseRunner(load("fmap_wire"), CrashStore(Path(sys.argv[1])), repro_times=0)
print(json.dumps([getattr(runner.run_one(d), "title", None) for d in inputs]))
"""


def test_two_data_bugs_get_two_folders(tmp_path):
    copy = tmp_path / "buggy"
    buggy_copy(tmp_path, *TWO_DATA[0])
    path = copy / TWO_DATA[1][0]
    path.write_text(path.read_text().replace(TWO_DATA[1][1], TWO_DATA[1][2]))
    env = dict(os.environ, PYTHONPATH=str(copy))
    store = tmp_path / "crashers"
    out = subprocess.run([sys.executable, "-c", RUN_TWO, str(store)], cwd=copy, env=env, text=True,
                         capture_output=True, timeout=120)
    titles = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(t and t.startswith("invariant DATA") for t in titles), titles + [out.stderr[-2000:]]
    assert titles[0] != titles[1], titles
    assert "simple" in titles[0] and "interleave" in titles[1], titles
    assert len([d for d in (store / "fmap_wire").iterdir() if d.is_dir()]) == 2
    main = subprocess.run([sys.executable, "-c", RUN_TWO, str(tmp_path / "main")], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), text=True, capture_output=True, timeout=120)
    assert json.loads(main.stdout.strip().splitlines()[-1]) == [None, None], main.stderr[-2000:]
