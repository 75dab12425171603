"""The search finds bugs that no seed reaches: one single-site bug planted per test in a copy of famfs.

Each plant needs a combination no seed input has (a count at a limit, an order of entries, a
name shape, a size that is not a multiple of the chunk). The test (a) replays the target's whole
corpus (`corpora/<target>/`, its `regress/` and the target's seeds) on the buggy copy and asserts
that nothing there finds the plant, so what follows measures search and not the seeds; (b) fuzzes
the plant's best target from the copy with `--stop-on-crash` for at most BUDGET seconds and
asserts the finding names the planted invariant and came after more executions than the corpus
holds; (c) prints target, executions and seconds to the finding.

The fsck plant is found by log_replay, whose accepted images go through fsck, and whose image
mutator has the operator that gives the overlap shapes. Not among the sites: `layout`'s decoding
(`fmap_at`, `extents_at`): the reference model shares it, so a bug there is invisible to the
oracle by design; the layout plant is in `SimpleFmap.extents`, which replay's result uses and
the model does not.

A fast subset: `pytest tests/quality/test_search.py -k "replay or index"` (the log_replay plants).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.quality.test_planted import buggy_copy, cli

BUDGET = 120


@dataclass(frozen=True)
class Plant:
    target: str
    file: str
    old: str
    new: str
    invariant: str
    needs: str                     # the combination no seed has


PLANTS = {
    "index-table-full-off-by-one": Plant(
        "log_replay", "harness/famfs/index.py",
        "        if n >= self.slots:\n", "        if n > self.slots:\n", "IDX-DENSE",
        "65 daxdevs: a full table (64 slots) plus one more ADD_DAXDEV"),
    "index-uuid-unique-only-against-primary": Plant(
        "log_replay", "harness/famfs/index.py",
        "        prior = self._by_uuid.get(add.uuid)\n",
        "        prior = 0 if add.uuid == self._devs[0].uuid else None\n", "IDX-UUID-UNIQUE",
        "two ADD_DAXDEV entries with the same (secondary) UUID"),
    "replay-nextents-17-accepted": Plant(
        "log_replay", "harness/famfs/replay.py",
        "        if not 1 <= n <= MAX_SIMPLE_EXTENTS:\n", "        if not 1 <= n <= MAX_SIMPLE_EXTENTS + 1:\n",
        "FMAP-SHAPE", "a simple fmap claiming 17 extents (one past the limit)"),
    "replay-strip-need-ignores-partial-chunk": Plant(
        "log_replay", "harness/famfs/replay.py",
        "        nchunks = -(-size // chunk)\n        for k, strip",
        "        nchunks = size // chunk\n        for k, strip", "FMAP-SHAPE",
        "an interleaved file whose size is not a chunk multiple, with a strip one chunk short"),
    "replay-path-last-component-unchecked": Plant(
        "log_replay", "harness/famfs/replay.py",
        "            for part in path.split(\"/\"):\n", "            for part in path.split(\"/\")[:-1]:\n",
        "NS-CONTAINED", "a path ending in '..', '.' or '/' (e.g. 'a/..')"),
    "replay-meta-dir-itself-accepted": Plant(
        "log_replay", "harness/famfs/replay.py",
        "        if path.startswith(META_DIR) and (path == META_DIR or path.startswith(META_DIR + \"/\")):\n",
        "        if path.startswith(META_DIR) and path.startswith(META_DIR + \"/\"):\n", "NS-CONFLICT",
        "an entry named exactly '.meta'"),
    "layout-16th-extent-dropped-from-fmap": Plant(
        "log_replay", "harness/famfs/layout.py",
        "        return self.slots[: min(self.nextents, MAX_SIMPLE_EXTENTS)]\n",
        "        return self.slots[: min(self.nextents, MAX_SIMPLE_EXTENTS - 1)]\n",
        "NS-CONFLICT", "a file with 16 extents, the limit (every seed file has one)"),
    "daxtable-last-slot-refused": Plant(
        "log_structured", "harness/famfs/daxtable.py",
        "        if not 0 <= index < self.nslots:\n            return -errno.EINVAL\n",
        "        if not 0 <= index < self.nslots - 1:\n            return -errno.EINVAL\n", "IDX-LOOKUP",
        "24 daxdevs (a full kernel table) and a file on index 23, the last slot"),
    "kernel-32-extents-refused": Plant(
        "fmap_wire", "harness/famfs/kernel.py",
        "            if not 1 <= len(extents) <= abi.max_extents:\n",
        "            if not 1 <= len(extents) < abi.max_extents:\n", "FMAP-SHAPE",
        "a GET_FMAP reply with 32 simple extents, the kernel's limit (seed replies carry 1-2)"),
    "fsck-reach-follows-the-last-extent": Plant(
        "log_replay", "harness/famfs/fsck.py",
        "            if stop > end:\n                end, owner = stop, span\n",
        "            end, owner = stop, span\n", "EXT-OVERLAP",
        "an extent over two other files' allocations, the second past the first's end (a seed "
        "image's overlaps are files on the same extents)"),
    "wire-fmap-reply-holds-8-extents": Plant(
        "log_structured", "harness/famfs/wire.py",
        "                       extents=tuple(WireSimple(e.devindex, e.offset, e.len) for e in fmap.extents))\n",
        "                       extents=tuple(WireSimple(e.devindex, e.offset, e.len) for e in fmap.extents[:8]))\n",
        "DATA", "a file with more than 8 extents (every seed file has one)"),
}

_REPLAY = r"""
import json, sys
from pathlib import Path
from harness.engine.registry import load
target = load(sys.argv[1])
inputs = [p.read_bytes() for p in sorted(Path("corpora", sys.argv[1]).rglob("*")) if p.is_file()]
inputs += list(target.seeds())
found = []
for k, data in enumerate(inputs):
    try:
        target.one_input(data)
    except BaseException as e:                      # any finding: an oracle verdict or a crash
        found.append(f"{type(e).__name__}: {e}"[:200])
print(json.dumps({"inputs": len(inputs), "found": found}))
"""


def replay_corpus(copy: Path, target: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(copy))
    run = subprocess.run([sys.executable, "-c", _REPLAY, target], cwd=copy, env=env, text=True,
                         capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PLANTS))
def test_search_finds_plant_no_seed_reaches(tmp_path, name):
    plant = PLANTS[name]
    copy = buggy_copy(tmp_path, plant.file, plant.old, plant.new)
    corpus = replay_corpus(copy, plant.target)
    assert not corpus["found"], f"a corpus input already finds the plant: {corpus['found'][:3]}"
    crashers = tmp_path / "crashers"
    run = cli(copy, "fuzz", plant.target, "--max-time", str(BUDGET), "--stop-on-crash", "--crashers", str(crashers),
              "--seed", "1", "--json", timeout=BUDGET + 300)
    doc = json.loads(run.stdout)
    print(f"\n{name}: target {plant.target}, {doc['execs']} execs, {doc['seconds']} s, "
          f"corpus {corpus['inputs']} inputs, needs {plant.needs}: {sorted(doc['new_signatures'].values())[:2]}")
    assert run.returncode == 1 and doc["new_signatures"], \
        f"{name}: not found in {doc['seconds']} s / {doc['execs']} execs ({plant.needs})"
    titles = [json.loads((crashers / plant.target / key / "crash.json").read_text())["title"]
              for key in doc["new_signatures"]]
    assert any(plant.invariant in t for t in titles), titles
    assert doc["execs"] > corpus["inputs"], "found within the corpus replay: not a search result"
