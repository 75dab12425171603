"""The scheduling policy (`engine.schedule`): the sweep first, cheapest first; then more time to
targets that still grow, some to every target, round robin when nothing grows; the slot runner
with fake campaigns: every slot busy, the budget kept, findings streamed."""
from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from harness import project
from harness.engine.campaign import FuzzResult
from harness.engine.schedule import Gain, Schedule
from harness.engine.slots import run_shares

TARGETS = ["a", "b", "c", "d"]


def play(s: Schedule, gains, shares: int, left: float = 1e9) -> list[str]:
    """Run the policy alone: `gains(target, k)` is the fake ft growth of the k-th share of a target."""
    order, count = [], Counter()
    for _ in range(shares):
        share = s.next(left)
        if share is None:
            break
        order.append(share.target)
        s.record(share.target, Gain(seconds=share.seconds, features=gains(share.target, count[share.target])))
        count[share.target] += 1
    return order


def test_the_sweep_runs_every_target_once_first_cheapest_first():
    s = Schedule(TARGETS, sweep_s=3, costs={"c": 4.0, "b": 1.0})
    first = [s.next(100, running=()) for _ in range(4)]
    assert [x.target for x in first] == ["a", "d", "b", "c"]
    assert all(x.phase == "sweep" and x.seconds == 3 for x in first)
    assert s.next(100, running={"c", "b", "a", "d"}) is None          # the sweep is still running


def test_running_targets_are_skipped_and_the_sweep_finishes_before_adaptive_shares():
    s = Schedule(TARGETS, sweep_s=3)
    assert s.next(100, running={"a"}).target == "b"
    assert s.next(100, running={"a", "b"}).target == "c"
    assert s.next(100, running={"b", "c"}).target == "a"               # a's sweep, once it is free
    assert s.next(100, running={"a", "b", "c"}).target == "d"
    assert s.next(100, running={"a", "b", "c", "d"}) is None
    assert s.next(100, running={"a", "b", "c"}).phase == "adaptive"


def test_a_target_that_keeps_growing_gets_most_of_the_time_but_none_starves():
    s = Schedule(TARGETS, sweep_s=3, quantum_s=10)
    order = play(s, lambda t, k: 40 if t == "b" else 0, 4 + 40)
    adaptive = Counter(order[4:])
    assert adaptive["b"] >= 20 and adaptive.most_common(1)[0][0] == "b"
    assert all(adaptive[t] >= 2 for t in TARGETS)                     # exploration: every target again


def test_growth_that_stops_moves_time_to_the_target_that_starts_growing():
    s = Schedule(TARGETS, sweep_s=3, quantum_s=10)
    early = play(s, lambda t, k: 50 if t == "a" and k < 6 else 0, 4 + 12)
    late = play(s, lambda t, k: 50 if t == "d" else 0, 24)
    assert Counter(early[4:])["a"] > Counter(early[4:])["d"]
    assert Counter(late)["d"] > Counter(late)["a"]


def test_nothing_grows_round_robin():
    s = Schedule(TARGETS, sweep_s=3, quantum_s=10)
    order = play(s, lambda t, k: 0, 4 + 20)
    assert set(Counter(order[4:]).values()) == {5}


def test_a_new_signature_counts_like_growth():
    s = Schedule(["x", "y"], sweep_s=3, quantum_s=10)
    for _ in ("x", "y"):
        s.next(100)
    s.record("x", Gain(seconds=5, features=0, signatures=1))
    s.record("y", Gain(seconds=5, features=0))
    assert s.next(100).target == "x"


def test_corpus_growth_stands_in_where_libfuzzer_reports_no_features():
    s = Schedule(["x", "y"], sweep_s=3, quantum_s=10)
    for _ in ("x", "y"):
        s.next(100)
    s.record("x", Gain(seconds=5, features=None, corpus=0))
    s.record("y", Gain(seconds=5, features=None, corpus=7))
    assert s.next(100).target == "y"


def test_shares_fit_the_budget_and_stop_when_too_little_is_left():
    s = Schedule(["x", "y"], sweep_s=5, quantum_s=10, min_s=2)
    assert s.next(4).seconds == 4
    assert s.next(1.5) is None
    s = Schedule(["x"], sweep_s=3, quantum_s=10, min_s=2)
    s.next(100)
    s.record("x", Gain(seconds=5, features=0))
    assert s.next(100).seconds == 6 and s.next(5).seconds == 5     # its second share: twice the sweep's
    assert s.next(1.9) is None


def test_a_targets_shares_double_up_to_the_quantum():
    s = Schedule(["x"], sweep_s=2, quantum_s=10)
    lengths = []
    for _ in range(5):
        share = s.next(100)
        lengths.append(share.seconds)
        s.record("x", Gain(seconds=share.seconds, features=3))
    assert lengths == [2, 4, 8, 10, 10]


def test_the_policy_is_deterministic():
    gains = lambda t, k: (k * 7 + ord(t)) % 5 * 10                    # noqa: E731
    assert play(Schedule(TARGETS), gains, 40) == play(Schedule(TARGETS), gains, 40)


class FakeCampaign:
    """A stand-in for campaign.Campaign: a share sleeps (scaled down), reports fake coverage."""

    log: list = []

    def __init__(self, name, *, findings=None, seconds=0.3, on_finding=None, **kw):
        self.name, self.findings, self.seconds, self.on_finding = name, findings or {}, seconds, on_finding
        self.starts = 0
        self.ended = self.finished = False

    def run(self, seconds=None, *, stop=None, after_inited=False, cap=None, budget=None, until=None):
        self.starts += 1
        t0 = time.monotonic()
        stop.wait(min(seconds, self.seconds))
        FakeCampaign.log.append((self.name, t0, time.monotonic()))
        r = FuzzResult(self.name, "atheris", execs=100, seconds=time.monotonic() - t0, cov_start=10, ft_start=20,
                       cov_end=10, ft_end=20 + self.findings.get(self.name, 0))
        if self.findings.get(self.name):
            r.new["k" + self.name] = "title"
            self.on_finding(self.name, "k" + self.name, "title", None)
        return r

    def pause(self):
        pass

    def end(self):
        self.ended = True

    def finish(self):
        assert self.ended
        self.finished = True
        return FuzzResult(self.name, "atheris", execs=100 * self.starts + 7, seconds=1.0)


def test_the_slot_runner_keeps_every_slot_busy_and_the_budget(tmp_path):
    FakeCampaign.log = []
    made = {}

    def make(name, **kw):
        made[name] = FakeCampaign(name, seconds=0.3, **kw)
        return made[name]
    s = Schedule(TARGETS, sweep_s=3, quantum_s=3, min_s=0.1)
    t0 = time.monotonic()
    done = run_shares(s, slots=2, budget=4.0, workdir=tmp_path, make=make)
    took = time.monotonic() - t0
    recs = done.shares
    assert took < 4.0 + 1.0
    assert {r.slot for r in recs} == {0, 1}
    assert [r.phase for r in recs[:4]] == ["sweep"] * 4 and {r.target for r in recs[:4]} == set(TARGETS)
    spans = sorted((a, b) for _, a, b in FakeCampaign.log)
    assert any(a2 < b1 for (a1, b1), (a2, b2) in itertools.pairwise(spans))    # two campaigns at once
    assert set(made) == set(TARGETS) and all(c.finished for c in made.values())   # one campaign a target
    for t in TARGETS:                                   # the shares sum to the campaign's end result
        assert sum(r.result.execs for r in recs if r.target == t) == done.results[t].execs == 100 * made[t].starts + 7


def test_stop_on_new_ends_the_job_at_the_first_new_signature(tmp_path):
    seen = []
    done = run_shares(Schedule(TARGETS, sweep_s=3, quantum_s=3, min_s=0.1), slots=2, budget=30.0,
                      workdir=tmp_path, stop_on_new=True, on_finding=lambda *a: seen.append(a[:2]),
                      make=lambda name, **kw: FakeCampaign(name, findings={"c": 5}, seconds=0.2, **kw))
    recs = done.shares
    assert ("c", "kc") in seen
    found = next(r for r in recs if r.target == "c")
    late = [r for r in recs if r.start >= found.start + found.seconds]
    assert len(late) <= 1              # at most the other slot, deciding as the finding came in
    assert all(r.slot != found.slot for r in late)
    assert len(recs) <= 5


@pytest.mark.slow
def test_a_short_fuzz_default_uses_both_cores_and_sweeps_every_target(tmp_path):
    """fuzz-default --max-time 20 over three fast targets on two slots: two campaigns overlap in
    time, every target gets its sweep share first, the wall budget holds, the summary keeps its
    fields and adds the schedule."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    root = project.root()
    names = ["log_replay", "fmap_wire", "superblock"]
    for t in names:
        shutil.copytree(root / "corpora" / t, tmp_path / "corpora" / t)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz-default", "--max-time", "20", "--jobs", "2",
                        "--out", "run", "--targets", *names], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    doc = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"targets", "findings", "lookups_checked", "execs", "summary"} <= set(doc)
    sched = doc["schedule"]
    assert [s["phase"] for s in sched[:3]] == ["sweep"] * 3 and {s["target"] for s in sched[:3]} == set(names)
    assert {s["slot"] for s in sched} == {0, 1}
    spans = sorted((s["start"], s["start"] + s["seconds"]) for s in sched)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))            # two campaigns at once
    assert all(t["execs"] > 0 and t["shares"] >= 1 for t in doc["targets"])
    assert took < 20 + 12 and "fuzzing for" in p.stdout
    for t in doc["targets"]:                                              # flat coverage: flagged, and said
        if t["ft_start"] is None:                                         # a loaded machine: corpus not through
            assert t["target"] in doc["coverage_flat"] and f"WARNING {t['target']}: never got through" in p.stdout
            continue
        assert t["coverage_grew"] == (t["ft_end"] > t["ft_start"] or t["cov_end"] > t["cov_start"])
        assert (t["target"] in doc["coverage_flat"]) == (not t["coverage_grew"])
        assert (f"WARNING {t['target']}: coverage never grew" in p.stdout) == (not t["coverage_grew"])


def test_a_target_still_running_its_corpus_gets_sweep_shares_first():
    s = Schedule(["slow", "a", "b"], sweep_s=3, quantum_s=10, costs={"slow": 9.0})
    assert [s.next(100).target for _ in range(3)] == ["a", "b", "slow"]
    s.record("slow", Gain(seconds=8, features=None, loaded=False))
    s.record("a", Gain(seconds=4, features=50))
    s.record("b", Gain(seconds=4, features=0))
    again = s.next(100)
    assert (again.target, again.phase) == ("slow", "sweep")              # before a's growth
    s.record("slow", Gain(seconds=8, features=None, loaded=False))
    assert s.next(100).target == "slow"
    s.record("slow", Gain(seconds=8, features=None, loaded=False))
    assert s.next(100).phase == "adaptive"                              # three tries, then the bandit
