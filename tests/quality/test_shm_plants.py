"""shm_states finds each shared-memory protocol bug planted in a copy of famfs, and only by search.

Each plant breaks one rule of famfs's protocol (famfs issue #59) in a way a seed does not reach:

* a missing flush: the appender leaves the counters unflushed when an append fills the log's
  last slot (a full log, which no seed builds): a client never sees the last entry, SHM-CONVERGE;
* a missing fence between an entry and its counters, in ADD_DAXDEV's appends only (no seed adds a
  device): the counters may reach shared memory before the entry, LOG-PREFIX;
* mkfs out of order: the new superblock is stored before the old log is zeroed and fenced (mkfs
  under a mount, which no seed runs): a fresh client pairs the new superblock with the old log;
  the finding names whichever check sees the mix first (IDX-CLUSTER: index 0 is the new primary
  UUID over the old entries; or LOG-PREFIX);
* a reader that does not re-read on a mismatch: the daemon keeps the prefix when an entry's CRC
  fails, even after dropping stale lines (only a running mount holds stale lines; seeds mount
  fresh): a running client stops at an entry the master finished, LOG-PREFIX.

The corpus is replayed on the buggy copy first and must find nothing; then the target is fuzzed
from the copy until the first new signature, the finding is minimized, and its repro fails on the
copy and passes on this tree. The execs and seconds to the finding are printed (a loaded machine).
"""
from __future__ import annotations

import json

import pytest

from tests.quality.test_planted import ROOT, buggy_copy, cli
from tests.quality.test_search import replay_corpus

BUDGET = 90
TARGET = "shm_states"

PLANTS = {
    # name: (file, original text, planted text, the invariant the finding must name, "": any, at mkfs)
    "missing flush: counters of the last slot": (
        "harness/famfs/image.py",
        "            port.flush(seq_at, 16)                    # ...the counters that publish it\n",
        "            if i + 1 < self.slots:\n                port.flush(seq_at, 16)\n",
        "SHM-CONVERGE"),
    "missing fence between an ADD_DAXDEV entry and its counters": (
        "harness/famfs/image.py",
        "            port.fence()                              # the entry is in shared memory before...\n",
        "            if etype != EntryType.ADD_DAXDEV:\n                port.fence()\n",
        "LOG-PREFIX"),
    "mkfs publishes the new superblock before the old log is gone": (
        "harness/famfs/image.py",
        "        mem.store(0, bytes(head))\n",
        "        mem.store(0, bytes(head))\n        mem.store(0, sb.encode())\n",
        ""),
    "reader keeps the prefix on a mismatch (no re-read)": (
        "harness/famfs/daemon.py",
        "        if state.stopped_at is not None and _invalidate(",
        "        if False and _invalidate(",
        "LOG-PREFIX"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PLANTS))
def test_shm_plant_is_found_by_search(tmp_path, name):
    file, old, new, invariant = PLANTS[name]
    copy = buggy_copy(tmp_path, file, old, new)
    corpus = replay_corpus(copy, TARGET)
    assert corpus["inputs"] > 0
    assert not corpus["found"], f"a corpus input already finds the plant: {corpus['found'][:3]}"
    crashers = tmp_path / "crashers"
    run = cli(copy, "fuzz", TARGET, "--max-time", str(BUDGET), "--stop-on-crash", "--crashers", str(crashers),
              "--seed", "1", "--json", timeout=BUDGET + 300)
    doc = json.loads(run.stdout)
    print(f"\n{name}: {doc['execs']} execs, {doc['seconds']} s, corpus {corpus['inputs']} inputs")
    assert run.returncode == 1 and doc["new_signatures"], f"{name}: not found in {doc['seconds']} s"
    assert doc["execs"] > corpus["inputs"], "found within the corpus replay: not a search result"
    folder = crashers / TARGET / next(iter(doc["new_signatures"]))
    record = json.loads((folder / "crash.json").read_text())
    assert (invariant or "shm/remkfs") in record["title"], record["title"]   # "": any check, during mkfs
    assert cli(copy, "minimize", str(folder), "--max-steps", "200").returncode == 0
    assert len((folder / "minimized").read_bytes()) <= len((folder / "input").read_bytes())
    assert cli(copy, "repro", str(folder), "--times", "2").returncode == 1      # fails on the plant
    assert cli(ROOT, "repro", str(folder), "--times", "2").returncode == 0      # passes on this tree


def test_remade_fs_names_the_identity_check_planted_out(tmp_path):
    """Not a search measurement (every remade_fs seed reaches it): with the daemon's identity
    check planted out, the target's corpus fails as FS-IDENTITY (the old mount serves the new
    file system); on this tree it replays clean (tests/targets)."""
    copy = buggy_copy(tmp_path, "harness/famfs/daemon.py", "        if now == self.identity:\n            return\n",
                      "        if True:\n            return\n")
    corpus = replay_corpus(copy, "remade_fs")
    assert corpus["inputs"] > 0 and len(corpus["found"]) == corpus["inputs"], corpus
    assert all("FS-IDENTITY" in str(f) for f in corpus["found"]), corpus["found"][:3]
