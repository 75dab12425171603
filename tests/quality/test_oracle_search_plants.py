"""The two holes of the stricter oracle that had no planted-bug test measured by search.

Both use the mechanism of test_oracle_plants.py: copy the package, edit one site, replay the
target's whole corpus on the copy (no seed may trigger the plant), fuzz the target from the copy
until the first new signature, check the finding came after more executions than the corpus
holds, minimize it, and check repro fails on the copy and passes on main. Each test prints the
target, the executions and the seconds to the finding.

* A bug in the kernel side's one lookup path that only a race shows (`KernelMount.lookup_steps`,
  which discovery_race and publish_order look up through): the lookup notes which slot it reads
  in one field per mount where one per CPU is needed, and takes its read as torn (the index past
  the table: EIO) when another lookup wrote that field meanwhile. Only two readers whose lookups
  of two different indices overlap meet it; the seeds' readers look up one index, or their
  lookups of two never overlap, and search finds an overlap.
* An exception in a daemon handler behind the FUSE mount (mount_e2e): the daemon's lookup looks
  names of 5 to 64 bytes up in a table that is never filled (KeyError). The seeds' names are the
  'a0'-shaped ones, two odd ones and one of 70 bytes; search makes others (the decoder's odd and
  long names, a file named by the famfs-aware mutator). The finding must be filed as an
  `internal-error` whose signature holds the child's famfs frames (daemon.py's lookup under the
  FUSE handler), not as an anonymous DATA finding.
"""
from __future__ import annotations

import pytest

from tests.quality.test_oracle_plants import found_by_search

BUDGET = 45                 # seconds of fuzzing at most; each was found within 15 s in its measured run

LOOKUP_RACE = (
    "discovery_race", "harness/famfs/kernel.py",
    "        self.lookups += 1\n"
    "        view = yield from self.table.read_steps(index)\n",
    "        self.lookups += 1\n"
    "        self.reading = index                         # which slot a lookup reads: one per mount, not per CPU\n"
    "        view = yield from self.table.read_steps(index)\n"
    "        if self.reading != index:                    # another lookup came in between: taken as a torn read\n"
    "            view = None\n",
)

HANDLER_ERROR = (
    "mount_e2e", "harness/famfs/daemon.py",
    "        ino = self.by_path.get(f\"{p.path}/{name}\" if p.path else name)\n",
    "        key = f\"{p.path}/{name}\" if p.path else name\n"
    "        ino = self.by_path.get(key) if len(name) <= 4 or len(name) > 64 else \\\n"
    "            self.__dict__.get(\"mid\", {})[key]\n",
)


@pytest.mark.slow
def test_a_bug_in_the_kernel_lookup_path_is_found_by_the_race_target(tmp_path):
    _, record = found_by_search(tmp_path, LOOKUP_RACE, "lookup path: a per-mount field read per CPU", BUDGET)
    assert record["title"].startswith("invariant IDX-LOOKUP at lookup@race/discovery"), record["title"]


@pytest.mark.slow
def test_a_daemon_handler_exception_is_found_as_an_internal_error(tmp_path):
    from tests.common.fuse import REASON
    if REASON:
        pytest.skip(f"needs FUSE: {REASON}")
    doc, record = found_by_search(tmp_path, HANDLER_ERROR, "daemon handler: KeyError in lookup", BUDGET)
    title = record["title"]
    assert title.startswith("internal-error KeyError at lookup in harness/famfs/daemon.py:lookup"), title
    assert "harness/famfs/fuse.py:" in title, title                 # the child's frames, through the probe log
    assert doc["internal_errors"] >= 1 and set(doc["internal_signatures"]) == set(doc["new_signatures"]), doc
