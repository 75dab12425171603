"""The external target's AFL++ lane against the self-test checker built with afl-clang-fast and
AddressSanitizer: every deliberate bug (the interleaved-entry combination and both asserts among
them) is found by search (no seed triggers any; each finding came after more executions than
the seeds), each in a crash folder of its own with our signature, a reproduction rate and a
repro command that works; AFL's queue becomes the program's corpus."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import project
from harness.ops.afl import fuzz_afl, seed_images
from harness.cases.external import External
from harness.gen.afl_mutator import expand

HERE = Path(__file__).resolve().parent
ROOT = project.root()
AFL_CC = shutil.which("afl-clang-fast") or shutil.which("afl-cc")

BUGS = {                                   # bug -> how its signature reads
    "BUG1 next_index": lambda s: "heap-buffer-overflow" in s["what"],
    "BUG2 nextents": lambda s: s["what"] == "AddressSanitizer:stack-buffer-overflow WRITE 24",
    "BUG3 entry copy": lambda s: s["what"] == "AddressSanitizer:stack-buffer-overflow WRITE 544",
    "BUG4 interleave x3 chunk": lambda s: s["what"] == "AddressSanitizer:stack-buffer-overflow WRITE 8"
    and s["frames"][0] == "buggy_checker.c:stripe3_fast_path",
    "BUG5 assert extent len": lambda s: s["kind"] == "assert" and s["frames"][0] == "buggy_checker.c:check_extents",
    "BUG6 assert daxdev index": lambda s: s["kind"] == "assert" and s["frames"][0] == "buggy_checker.c:check_daxdev",
}


def bug_of(sig: dict) -> str | None:
    hits = [b for b, test in BUGS.items() if test(sig)]
    assert len(hits) <= 1, (sig, hits)
    return hits[0] if hits else None


def _build(tmp: Path, cc: str, name: str) -> str:
    out = tmp / name
    r = subprocess.run([cc, "-g", "-O1", "-fsanitize=address", "-fno-omit-frame-pointer", "-w", "-o", str(out),
                        str(HERE / "buggy_checker.c")], capture_output=True, text=True,
                       env=dict(os.environ, AFL_QUIET="1"))
    if r.returncode != 0:
        pytest.skip(f"cannot build with {cc} -fsanitize=address: {r.stderr[-300:]}")
    return str(out)


BUDGET_S = 200                            # seconds of afl-fuzz at most


def _afl_checker(tmp_path: Path) -> str:
    """The self-test checker built with afl-clang-fast and ASan (skips where AFL++ is missing)."""
    if AFL_CC is None or shutil.which("afl-fuzz") is None:
        pytest.skip("AFL++ is not installed (apt-get install afl++ afl++-clang; ./scripts/setup does)")
    return _build(tmp_path, AFL_CC, "buggy_checker_afl")


@pytest.mark.slow
def test_afl_lane_finds_every_deliberate_bug_each_in_its_own_folder(tmp_path, record_property):
    prog = _afl_checker(tmp_path)
    cmd = f"{prog} {{image}}"
    seeds = seed_images([])
    plain = External(cmd, timeout=10)
    try:                                   # search, not seeds: no seed triggers any bug
        assert all(plain.run([bytes(expand(s))]).signature is None for s in seeds)
    finally:
        plain.close()
    crashers = tmp_path / "crashers"

    def all_found(r) -> bool:
        return {bug_of(json.loads((crashers / "external" / k / "crash.json").read_text())["signature"])
                for k in r.fuzz.signatures} >= set(BUGS)
    # the run ends as soon as all six are in; the budget covers a loaded CI machine (a run with the
    # suite beside it on both cores had five of six after 41,832 execs in 111 s: BUG 4 needs a
    # three-strip interleaved entry, one draw among the image mutator's operators)
    r = fuzz_afl(cmd, max_time=BUDGET_S, crashers=crashers, runs=tmp_path / "runs", seed=1, until=all_found,
                 repro_times=2)
    folders = {k: json.loads((crashers / "external" / k / "crash.json").read_text()) for k in r.fuzz.signatures}
    by_bug: dict[str, list[str]] = {}
    for k, doc in folders.items():
        by_bug.setdefault(bug_of(doc["signature"]) or "other", []).append(k)
    table = {b: min(folders[k]["extra"]["afl_seconds"] for k in keys) for b, keys in by_bug.items()}
    print(f"\nAFL++ lane, seconds to each bug ({r.fuzz.execs} execs in {r.fuzz.seconds:.0f} s): "
          + json.dumps(table, sort_keys=True))
    record_property("seconds_to_bug", json.dumps({
        "lane": "AFL++ (--engine afl)", "bugs": {b: table[b] for b in BUGS if b in table}, "all": list(BUGS),
        "budget": BUDGET_S, "note": f"seconds since afl-fuzz started; {r.fuzz.execs} execs in {r.fuzz.seconds:.0f} s "
                               f"(ended once all six were in)"}))
    assert set(BUGS) <= set(by_bug), f"found {sorted(by_bug)}; folders: {[d['title'] for d in folders.values()]}"
    for b in BUGS:                         # each bug's own folders hold only it (a key per signature)
        for k in by_bug[b]:
            doc = folders[k]
            assert doc["signature"]["site"] == r.tag and doc["mode"] == "afl"
            assert doc["extra"]["afl_execs"] > len(seeds), (b, doc["extra"])
            assert int(doc["reproduced"].split("/")[0]) >= 1, (b, doc["reproduced"])
            assert "FAMFS_FUZZ_EXTERNAL_CMD=" in doc["repro"] and "famfs-fuzz repro" in doc["repro"]
    assert not [u for u in r.unreproduced if u.startswith("crashes/")], r.unreproduced
    corpus = tmp_path / "runs" / "external" / r.tag / "corpus"
    assert r.imported > 0 and all(p.read_bytes()[:1] == b"\x00" for p in corpus.iterdir())
    # the repro command of a folder works (the store's input is an external-target input)
    folder = crashers / "external" / by_bug["BUG4 interleave x3 chunk"][0]
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAMFS_FUZZ_EXTERNAL_CMD=cmd)
    rep = subprocess.run([sys.executable, "-m", "harness.cli", "repro", str(folder), "--times", "1", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 1 and json.loads(rep.stdout)["reproduced"] == 1, rep.stdout + rep.stderr[-1500:]


def test_afl_lane_refuses_an_uninstrumented_program_with_a_harness_error(tmp_path):
    if shutil.which("afl-fuzz") is None:
        pytest.skip("AFL++ is not installed")
    from harness.engine.errors import HarnessError
    with pytest.raises(HarnessError, match="instrumentation"):
        fuzz_afl("/bin/true {image}", max_time=2, crashers=tmp_path / "c", runs=tmp_path / "runs")


def _afl_cli(tmp_path: Path, prog: str, *budget: str) -> tuple[subprocess.CompletedProcess[str], dict, int]:
    """`famfs-fuzz fuzz external --engine afl` in `tmp_path` (its runs/ there); the report, and the
    hits the crash store holds."""
    p = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "external", "--engine", "afl",
                        "--cmd", f"{prog} {{image}}", "--seed", "1", "--json", "--crashers", str(tmp_path / "crashers"),
                        *budget], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=300)
    held = sum(json.loads(f.read_text())["count"] for f in (tmp_path / "crashers" / "external").glob("*/crash.json"))
    return p, json.loads(p.stdout), held


def _afl_stats(tmp_path: Path) -> dict[str, str]:
    from harness.ops.afl import read_stats
    (stats,) = (tmp_path / "runs" / "external").glob("*/afl/out/default/fuzzer_stats")
    return read_stats(stats)


@pytest.mark.slow
@pytest.mark.parametrize("budget", [("--runs", "1500"), ("--max-time", "4")])
def test_an_afl_runs_or_time_budget_reports_what_afl_ran_and_the_store_holds(tmp_path, budget):
    """`--runs N` is afl-fuzz's -E, `--max-time` its -V: the report's executions are AFL's own
    count, at least N; its findings are the hits the crash store holds."""
    prog = _afl_checker(tmp_path)
    p, doc, held = _afl_cli(tmp_path, prog, *budget)
    assert p.returncode == 1, p.stderr[-2000:]          # the checker's bugs: findings, exit 1
    assert doc["execs"] == int(_afl_stats(tmp_path)["execs_done"])
    if budget[0] == "--runs":
        assert doc["execs"] >= int(budget[1])
    else:
        assert doc["seconds"] >= float(budget[1])
    assert doc["findings"] > 0 and doc["findings"] == held
    assert len(doc["signatures"]) == len(list((tmp_path / "crashers" / "external").glob("*/crash.json")))


@pytest.mark.slow
def test_afl_stop_on_crash_ends_at_the_first_new_signature(tmp_path):
    prog = _afl_checker(tmp_path)
    p, doc, held = _afl_cli(tmp_path, prog, "--max-time", "120", "--stop-on-crash")
    assert p.returncode == 1 and doc["new_signatures"], p.stderr[-2000:]
    assert doc["seconds"] < 60 and doc["findings"] == held


def test_an_afl_run_without_a_budget_is_a_harness_error(tmp_path):
    from harness.engine.errors import HarnessError
    with pytest.raises(HarnessError, match="budget"):
        fuzz_afl("prog {image}", max_time=None, crashers=tmp_path / "c", runs=tmp_path / "runs")
    with pytest.raises(HarnessError, match="at least 1"):
        fuzz_afl("prog {image}", max_time=None, execs=0, crashers=tmp_path / "c", runs=tmp_path / "runs")


@pytest.mark.slow
def test_todays_lane_on_the_same_checker_for_the_closing_note(tmp_path, record_property):
    """Today's lane (libFuzzer / Atheris, guided by our Python's coverage) on the plain ASan build,
    30 s, for the comparison in the closing note. It finds only deliberate bugs, each under its
    own signature (what it finds within the budget varies)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    prog = _build(tmp_path, cc, "buggy_checker")
    budget = 30
    start = time.time()
    p = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "external", "--cmd", f"{prog} {{image}}",
                        "--max-time", str(budget), "--jobs", "1", "--seed", "1", "--json",
                        "--crashers", str(tmp_path / "crashers")], cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=budget + 120)
    doc = json.loads(p.stdout)
    table: dict[str, float] = {}
    for f in (tmp_path / "crashers" / "external").glob("*/crash.json"):
        c = json.loads(f.read_text())
        bug = bug_of(c["signature"])
        assert bug is not None, c["title"]                  # nothing but the deliberate bugs
        seen = datetime.datetime.fromisoformat(c["first_seen"]).timestamp() - start
        table[bug] = round(min(table.get(bug, 1e9), seen), 1)
    held = list((tmp_path / "crashers" / "external").glob("*/crash.json"))
    assert doc["execs"] > 0 and len(doc["signatures"]) == len(held)
    record_property("seconds_to_bug", json.dumps({
        "lane": "today's (--engine atheris)", "bugs": table, "all": list(BUGS), "budget": budget,
        "note": f"seconds since the CLI started (1 s resolution); {doc['execs']} execs in {doc['seconds']:.0f} s"}))


def test_the_nightly_hook_runs_each_command_and_says_why_one_was_skipped(tmp_path):
    from harness.ops.afl import nightly_lane
    results, skipped = nightly_lane(["prog {images}"], 1, crashers=tmp_path / "c", workdir=tmp_path / "w")
    assert results == [] and len(skipped) == 1 and "several device files" in skipped[0]


def test_nightly_runs_the_afl_lane_and_says_why_a_command_cannot_run(tmp_path, monkeypatch):
    """`nightly --afl-cmd CMD` runs the lane after the in-process targets; a command the lane
    cannot run (several device files) is recorded as skipped, with the reason, and the night goes on."""
    from harness.ops import nightly as nightly_mod
    from harness.engine.slots import Scheduled
    monkeypatch.setattr(nightly_mod, "run_shares", lambda *a, **kw: Scheduled())
    monkeypatch.setattr(nightly_mod, "merge", lambda *a, **kw: 0)
    monkeypatch.setattr(nightly_mod, "famfs_coverage", lambda *a, **kw: {})
    lines: list[str] = []
    r = nightly_mod.nightly(tmp_path / "n", budget=1, targets=["superblock"], crashers=tmp_path / "c",
                            corpora=tmp_path / "corpora", progress=lines.append,
                            afl_cmds=["prog {images}"], afl_seconds=5)
    assert len(r.skipped) == 1 and r.skipped[0].startswith("AFL++ lane (prog {images})")
    assert any("AFL++ lane skipped" in line for line in lines)
