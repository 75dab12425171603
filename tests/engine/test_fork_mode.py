"""`fuzz --jobs N --parallel libfuzzer`: one libFuzzer -fork=N process whose children are our
atheris_main, re-run from its command line. What the children find lands in our crash store with
our signatures, the campaign reports the executions and findings the store and the children's
counters hold, the corpus is libFuzzer's merge, and no child outlives the campaign."""
from __future__ import annotations

import json

import psutil
import pytest

from harness.engine.campaign import Campaign, parse_log, store_counts
from harness.engine.errors import HarnessError
from tests.engine.test_run_end import crashy, held, run  # noqa: F401 - the fixture is used by name


@pytest.mark.slow
def test_fork_mode_findings_land_in_the_crash_store_with_our_signatures(tmp_path, crashy):  # noqa: F811
    r = run(tmp_path, jobs=2, parallel="libfuzzer", max_time=12)
    assert not r.errors, r.errors
    assert r.findings > 0 and r.findings == held(tmp_path / "crashers")
    assert set(r.signatures) == set(store_counts(tmp_path / "crashers", "external"))
    for key in r.signatures:
        doc = json.loads((tmp_path / "crashers" / "external" / key / "crash.json").read_text())
        assert doc["signature"]["kind"] and doc["repro"].startswith("famfs-fuzz repro") and doc["count"] >= 1
    stats = list((tmp_path / "runs" / "external").glob("stats-0-*.json"))
    assert len(stats) >= 2                                   # the parent and at least one child, each its own
    children = [json.loads(p.read_text()) for p in stats]
    assert r.execs == sum(c["execs"] for c in children) > 0
    assert r.execs >= parse_log(tmp_path / "runs" / "external" / "fuzz-0.log").execs   # libFuzzer's own count
    assert "-fork=2" in (tmp_path / "runs" / "external" / "fuzz-0.log").read_text(errors="replace")
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not left, [p.info["cmdline"] for p in left]


def test_an_unknown_parallel_mode_is_a_harness_error(tmp_path):
    with pytest.raises(HarnessError, match="unknown --parallel"):
        Campaign("log_replay", parallel="threads", workdir=tmp_path)


@pytest.mark.slow
def test_fork_mode_runs_budget_reports_what_ran_and_what_the_store_holds(tmp_path, crashy):  # noqa: F811
    """libFuzzer checks -runs between children, so the budget is passed by the last child's
    share; what is reported is what ran (every child's counters) and what the store holds."""
    r = run(tmp_path, jobs=2, parallel="libfuzzer", runs=40, max_time=None)
    assert not r.errors, r.errors
    assert r.runs_budget == 40 and r.execs >= 40
    children = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "external").glob("stats-0-*.json")]
    assert r.execs == sum(c["execs"] for c in children)
    assert r.findings > 0 and r.findings == held(tmp_path / "crashers")


def test_a_fork_campaign_refuses_to_pause(tmp_path):
    c = Campaign("log_replay", jobs=2, parallel="libfuzzer", workdir=tmp_path)
    assert c.fork
    with pytest.raises(HarnessError, match="cannot pause"):
        c.pause()
    assert not Campaign("log_replay", jobs=1, parallel="libfuzzer", workdir=tmp_path).fork   # one job: no fork
