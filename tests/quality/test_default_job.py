"""The main job finds a planted bug of each target family soon after it starts.

One plant per family, each one that no corpus input of its target reaches (replayed first, on the
buggy copy: so what follows measures the search, not the seeds): the image targets (log_replay),
the structured targets (log_structured), the wire (fmap_wire) and the races (discovery_race).
Then `famfs-fuzz fuzz-default` runs from the copy over every default target, as the README's main
job does, and the first `NEW` line naming the planted invariant is timed from the job's start.

The first NEW line naming the planted invariant counts, whichever target of the job found it (a
daxtable plant is reached by every structured target); that target's corpus is replayed too, and
it must have run more inputs than its corpus load.

The issue's goal is 30 s on an otherwise idle 2-core machine. In the test suite the other pytest
workers share the cores, so the bound asserted is `LIMIT_S`, and the measured seconds are
printed; the default jobs of this module never overlap each other (a lock file). Measured with
`pytest tests/quality/test_default_job.py -s -n 0` on this 2-core machine: idle (16 targets),
image 9.9 s, structured 11.9 s, wire 14.9 s, races 8.2-9.0 s (152-428 discovery_race inputs,
in its 2 s sweep share); under other engineers' load (load average 2-7), image 7.6-15.3 s,
structured 10.5-28.6 s, wire 17.3-26.8 s. The race family once needed its own 230 s bound:
discovery_race ran 10-40 inputs a second, because a reader spinning on the table's lock took
every step its schedule bytes left to option 0; the scheduler no longer offers a spinning CPU
until something else has run (faults/schedule.py), and it runs about 1,300 a second.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.quality.test_oracle_plants import PLANTS as ORACLE_PLANTS
from tests.quality.test_planted import buggy_copy
from tests.quality.test_search import PLANTS as SEARCH_PLANTS, replay_corpus

BUDGET = 120
LIMIT_S = 60.0                            # twice the slowest measured under load (structured, 28.6 s)

FAMILIES = {
    "image (log_replay)": SEARCH_PLANTS["replay-nextents-17-accepted"],
    "structured (log_structured)": SEARCH_PLANTS["daxtable-last-slot-refused"],
    "wire (fmap_wire)": SEARCH_PLANTS["kernel-32-extents-refused"],
}
_RACE = ORACLE_PLANTS["a present device's lookup fails (another CPU's filled, not yet valid slot cached as a failed "
                      "install)"]

NEW = re.compile(r"^\s*NEW (\S+) at ([0-9.]+) s: (.*?)  -> ")


def _plant(family: str) -> tuple[str, str, str, str, str]:
    if family == "races (discovery_race)":
        target, file, old, new, named = _RACE
        return target, file, old, new, named
    p = FAMILIES[family]
    return p.target, p.file, p.old, p.new, p.invariant


@pytest.mark.slow
@pytest.mark.parametrize("family", [*FAMILIES, "races (discovery_race)"])
def test_the_default_job_finds_a_plant_of_each_family(tmp_path, family):
    target, file, old, new, named = _plant(family)
    copy = buggy_copy(tmp_path, file, old, new)
    corpus = replay_corpus(copy, target)
    assert not corpus["found"], f"a corpus input already finds the plant: {corpus['found'][:3]}"
    env = dict(os.environ, PYTHONPATH=str(copy))
    budget = BUDGET
    cmd = [sys.executable, "-m", "harness.cli", "fuzz-default", "--max-time", str(budget),
           "--out", str(tmp_path / "runs"), "--crashers", str(tmp_path / "crashers")]
    with open(Path(os.environ.get("TMPDIR", "/tmp")) / "famfs-fuzz-default-job.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                 # one default job at a time on this machine
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        found = None
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = NEW.match(line)
            if m and named in m.group(3) and found is None:
                found = (m.group(1), float(m.group(2)), time.monotonic() - started, m.group(3))
                proc.terminate()                         # found: the job ends (it writes its summary)
        proc.wait(timeout=120)
    assert found is not None, f"{family}: not found by the default job in {budget} s:\n" + "".join(lines[-30:])
    finder, in_job, wall, title = found
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())["targets"]
    execs = {t["target"]: t["execs"] for t in summary}
    loaded = {t["target"]: t["corpus_execs"] for t in summary}     # what its libFuzzer ran as the corpus
    if finder != target:                             # another target of the job reached it: not by its seeds either
        corpus = replay_corpus(copy, finder)
        assert not corpus["found"], f"a {finder} corpus input finds the plant: {corpus['found'][:3]}"
    print(f"\n{family}: found by {finder} {in_job:.1f} s into the default job ({wall:.1f} s from its launch; "
          f"{finder} ran {execs.get(finder)} inputs, {loaded.get(finder)} of them its corpus; none of its "
          f"{corpus['inputs']} corpus and seed inputs finds it; "
          f"{sum(execs.values())} inputs in the job): {title}")
    # the corpus replay above found nothing, and the finder ran more inputs than its corpus load
    assert execs.get(finder, 0) > (loaded.get(finder) or corpus["inputs"]), "found within the corpus: not search"
    assert in_job <= LIMIT_S, f"{family}: found only after {in_job:.1f} s"
