"""Campaign bookkeeping: libFuzzer's log read back (coverage after the corpus and at the end,
executed units), the flat-coverage warning, the reconciliation with the crash store, and the
lookup counters summed and shown wherever results are."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import project
from harness.ops import report
from harness.engine.campaign import FuzzResult, counters_text, flat_warning, parse_log, reconcile, store_counts
from harness.engine.crashstore import CrashStore
from harness.engine.signature import Signature

FLAT = """INFO: Seed: 1
INFO:       34 files found in corpora/log_replay
#35	INITED cov: 164 ft: 430 corp: 28/50Kb exec/s: 0 rss: 82Mb
#4096	pulse  cov: 164 ft: 430 corp: 28/50Kb lim: 5724 exec/s: 819 rss: 274Mb
#5891	REDUCE cov: 164 ft: 430 corp: 28/50Kb lim: 5736 exec/s: 589 rss: 274Mb L: 3750/5688 MS: 1 EraseBytes-
"""
GROWS = FLAT + ("#6001\tNEW    cov: 165 ft: 433 corp: 29/51Kb lim: 5736 exec/s: 589 rss: 274Mb "
                 "L: 70/5688 MS: 1 CopyPart-\n") + """\
#6010	DONE   cov: 165 ft: 433 corp: 29/51Kb lim: 5736 exec/s: 589 rss: 274Mb
Done 6010 runs in 10 second(s)
stat::number_of_executed_units: 6010
"""


def test_the_log_gives_coverage_after_the_corpus_and_at_the_end(tmp_path):
    (tmp_path / "flat.log").write_text(FLAT)
    (tmp_path / "grows.log").write_text(GROWS)
    flat, grows = parse_log(tmp_path / "flat.log"), parse_log(tmp_path / "grows.log")
    assert (flat.inited, flat.cov_start, flat.ft_start, flat.cov_end, flat.ft_end) == (35, 164, 430, 164, 430)
    assert flat.execs == 5891                                          # killed: the last status line
    assert (grows.cov_end, grows.ft_end, grows.execs) == (165, 433, 6010)
    assert parse_log(tmp_path / "missing.log").execs == 0


def test_flat_coverage_is_flagged_and_growth_is_not():
    r = FuzzResult("log_replay", "atheris", execs=84096, cov_start=164, ft_start=430, cov_end=164, ft_end=430)
    assert r.coverage_grew is False and r.as_dict()["coverage_grew"] is False
    line = flat_warning(r, shares=3)
    assert "log_replay" in line and "cov 164 ft 430" in line and "3 shares" in line and "harness problem" in line
    r.ft_end = 431
    assert r.coverage_grew is True and flat_warning(r) is None
    assert FuzzResult("x", "hypothesis").coverage_grew is None                  # not measured: no warning
    assert flat_warning(FuzzResult("x", "hypothesis", execs=5)) is None
    slow = FuzzResult("daemon_kill", "atheris", execs=24, seconds=36.0)          # INITED never came
    assert "never got through its corpus (24 inputs in 36 s" in flat_warning(slow)


def test_lookup_counters_are_summed_when_present_and_zero_when_absent():
    r = FuzzResult("t", "atheris")
    r.add({"execs": 5, "lookups_checked": 9})                                   # a runner without them
    assert counters_text(r) == "" and r.as_dict()["lookups_unjustified"] == 0
    r.add({"execs": 5, "lookups_checked": 9, "lookups_ok": 7, "lookups_justified": 1, "lookups_unjustified": 1,
           "internal_errors": 2, "internal_signatures": {"k1": "internal: KeyError"}})
    r.add({"lookups_ok": 3, "internal_errors": 1, "internal_signatures": {"k2": "internal: ValueError"}})
    d = r.as_dict()
    assert (d["lookups_ok"], d["lookups_justified"], d["lookups_unjustified"], d["internal_errors"]) == (10, 1, 1, 3)
    assert d["internal_signatures"] == {"k1": "internal: KeyError", "k2": "internal: ValueError"}
    assert counters_text(r) == "lookups ok 10 justified 1 unjustified 1, internal errors 3"
    other = FuzzResult("t", "atheris")
    other.add({"lookups_unjustified": 4})
    r.merge(other)
    assert r.counters["lookups_unjustified"] == 5


def test_reconcile_takes_the_findings_the_store_recorded_during_the_run(tmp_path):
    store = CrashStore(tmp_path)
    old, new = Signature.of("invariant", "IDX-DENSE"), Signature.of("invariant", "DATA")
    store.save("t", old, b"a")
    before = store_counts(tmp_path, "t")
    for data in (b"b", b"c"):
        store.save("t", old, data)
    store.save("t", new, b"d")
    r = FuzzResult("t", "atheris", execs=1, findings=1)                         # the job reported one
    reconcile(r, before, store_counts(tmp_path, "t"))
    assert r.findings == 3 and set(r.signatures) == {old.key, new.key} and set(r.new) == {new.key}


class _Result:                 # what report.summary_of reads from a nightly
    def __init__(self, results, flat):
        self.out, self.budget, self.jobs, self.started, self.seconds = "run", 60, 2, 0.0, 61.0
        self.rounds, self.crashers, self.merges, self.coverage, self.skipped = [results], [], {}, {}, []
        self.flat, self.shares = flat, []

    @property
    def results(self):
        return self.rounds[0]

    @property
    def new_findings(self):
        return 0


def test_nightly_summary_and_report_show_counters_and_flat_targets(tmp_path):
    a = FuzzResult("log_replay", "atheris", execs=10, seconds=1, cov_start=164, ft_start=430, cov_end=164, ft_end=430)
    b = FuzzResult("fmap_wire", "atheris", execs=10, seconds=1, cov_start=10, ft_start=20, cov_end=12, ft_end=25)
    b.add({"lookups_ok": 41, "lookups_justified": 2, "lookups_unjustified": 3, "internal_errors": 1,
           "internal_signatures": {"k": "internal: KeyError"}})
    flat = [{"target": "log_replay", "cov_start": 164, "ft_start": 430, "cov_end": 164, "ft_end": 430,
             "execs": 10, "reason": "libFuzzer coverage never grew past what the corpus gave"}]
    summary = report.summary_of(_Result([a, b], flat))
    assert (summary["lookups_ok"], summary["lookups_unjustified"], summary["internal_errors"]) == (41, 3, 1)
    assert summary["internal_signatures"] == {"k": "internal: KeyError"}
    assert [f["target"] for f in summary["coverage_flat"]] == ["log_replay"]
    paths = report.write(tmp_path, summary)
    page = paths[2].read_text()
    assert 'id="coverage-flat"' in page and "never grew past the corpus" in page
    assert "3 unjustified" in page and "1 internal errors" in page
    suite = ET.parse(paths[1]).getroot()
    skipped = [c for c in suite if c.get("classname") == "harness.coverage"]
    assert [c.get("name") for c in skipped] == ["log_replay"] and skipped[0].find("skipped") is not None
    assert suite.get("failures") == "0"
    assert json.loads(Path(paths[0]).read_text())["coverage_flat"][0]["ft_start"] == 430


@pytest.mark.slow
def test_a_paused_campaign_stops_between_inputs_and_goes_on(tmp_path):
    """Campaign.pause stops the job itself (state T) with no case in flight, keeps its corpus
    loaded (INITED once), and the next share goes on from where it stopped."""
    from harness.engine.campaign import Campaign, _stopped
    c = Campaign("publish_order", crashers=tmp_path / "crashers", workdir=tmp_path / "runs", seed=1,
                 corpora=project.root() / "corpora")
    first = c.run(1.0, after_inited=True, cap=30)
    c.pause()
    pid = c.procs[0][0].pid
    assert _stopped(pid) and c.alive()
    frozen = c.stats()[0]["execs"]
    time.sleep(1.0)
    assert c.stats()[0]["execs"] == frozen                       # nothing runs while paused
    second = c.run(1.0)
    c.pause()
    whole = c.finish()
    assert first.execs > 0 and second.execs > 0 and not whole.findings, whole.signatures
    assert whole.execs >= first.execs + second.execs
    assert Path(whole.logs[0]).read_text().count("INITED") == 1     # the corpus ran once
