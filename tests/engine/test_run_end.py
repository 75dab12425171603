"""Nothing lost at the end of a run: for each engine and the external target, the executions and
findings a campaign reports are what happened and what the crash store holds, whether it ends at
its runs budget, its time budget, on SIGTERM or with its engine child killed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness import project
from harness.engine.campaign import fuzz, parse_log, store_counts

ROOT = project.root()
CRASHY = """#!/bin/sh
# SIGSEGV on about a third of the images (by checksum), refuse (exit 1) the rest
c=$(cksum < "$1"); c=${c%% *}
if [ $((c % 3)) -eq 0 ]; then kill -SEGV $$; fi
exit 1
"""


@pytest.fixture
def crashy(tmp_path, monkeypatch):
    prog = tmp_path / "crashy.sh"
    prog.write_text(CRASHY)
    prog.chmod(0o755)
    monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_CMD", f"{prog} {{image}}")
    monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_BATCH", "0")
    monkeypatch.delenv("FAMFS_FUZZ_DIFFERENTIAL", raising=False)
    return prog


def held(crashers: Path) -> int:
    """Hits the crash store holds for the external target."""
    return sum(count for count, _ in store_counts(crashers, "external").values())


def run(tmp_path: Path, **kw):
    return fuzz("external", crashers=tmp_path / "crashers", workdir=tmp_path / "runs", seed=3, **kw)


def corpus_size() -> int:
    return sum(1 for p in (ROOT / "corpora" / "external").iterdir() if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("engine", ["atheris", "hypothesis"])
def test_a_runs_budget_reports_every_execution_and_finding(tmp_path, crashy, engine):
    n = corpus_size() + 21                   # more than the corpus: the budget decides
    r = run(tmp_path, engine=engine, runs=n, max_time=None)
    assert r.execs == n
    assert r.findings > 0 and r.findings == held(tmp_path / "crashers")
    assert set(r.signatures) == set(store_counts(tmp_path / "crashers", "external"))


def test_a_runs_budget_below_the_corpus_runs_the_corpus_and_says_so(tmp_path, crashy):
    r = run(tmp_path, runs=3, max_time=None)
    assert r.corpus_execs == corpus_size() + 1            # libFuzzer: every corpus file, one empty input
    assert r.execs == r.corpus_execs and r.runs_budget == 3
    assert r.findings == held(tmp_path / "crashers")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["atheris", "hypothesis"])
def test_a_time_budget_reports_what_the_store_holds(tmp_path, crashy, engine):
    r = run(tmp_path, engine=engine, max_time=2)
    assert r.findings > 0 and r.findings == held(tmp_path / "crashers")
    if engine == "atheris":
        assert r.execs == parse_log(Path(r.logs[0])).execs > 0     # libFuzzer's executed units


@pytest.mark.slow
def test_the_cli_with_runs_and_json_reports_the_findings(tmp_path, crashy):
    shutil.copytree(ROOT / "corpora" / "external", tmp_path / "corpora" / "external")
    p = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "external", "--cmd", f"{crashy} {{image}}",
                        "--runs", "30", "--jobs", "1", "--json", "--seed", "1"], cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    doc = json.loads(p.stdout)
    assert doc["execs"] == 30 and doc["findings"] == held(tmp_path / "crashers") > 0
    assert p.returncode == 1


@pytest.mark.slow
def test_sigterm_ends_the_campaign_with_its_results(tmp_path, crashy):
    shutil.copytree(ROOT / "corpora" / "external", tmp_path / "corpora" / "external")
    p = subprocess.Popen([sys.executable, "-m", "harness.cli", "fuzz", "external", "--cmd", f"{crashy} {{image}}",
                          "--max-time", "60", "--jobs", "2", "--json", "--seed", "1"], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while held(tmp_path / "crashers") < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    doc = json.loads(out)
    assert doc["interrupted"] and doc["findings"] == held(tmp_path / "crashers") >= 5
    assert doc["execs"] >= doc["findings"] and p.returncode == 1


def test_a_killed_engine_child_loses_no_finding(tmp_path, crashy):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", run(tmp_path, max_time=60)))
    t.start()
    deadline = time.monotonic() + 60
    while held(tmp_path / "crashers") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    kids = [c for c in psutil.Process().children() if "atheris_main" in " ".join(c.cmdline())]
    assert kids
    for c in kids:
        c.kill()
    t.join(60)
    r = box["r"]
    assert r.findings == held(tmp_path / "crashers") >= 3
    assert r.errors and "exit -9" in r.errors[0]


@pytest.mark.slow
def test_a_runs_budget_is_split_over_the_jobs(tmp_path, crashy):
    n = 2 * (corpus_size() + 1) + 11                  # each job past its corpus
    r = run(tmp_path, runs=n, max_time=None, jobs=2)
    assert r.execs == n and len(r.logs) == 2
    assert r.findings == held(tmp_path / "crashers")


def test_an_engine_that_cannot_run_an_input_is_a_typed_harness_error(tmp_path, monkeypatch):
    from harness.engine.errors import HarnessError
    monkeypatch.delenv("FAMFS_FUZZ_EXTERNAL_CMD", raising=False)
    with pytest.raises(HarnessError) as e:
        run(tmp_path, max_time=5)
    assert "needs --cmd" in str(e.value)


@pytest.mark.slow
def test_a_new_signature_is_streamed_while_the_campaign_runs(tmp_path, crashy):
    lines: list[tuple[float, str]] = []
    r = run(tmp_path, max_time=4, progress=lambda line: lines.append((time.monotonic(), line)))
    ended = time.monotonic()
    new = [(t, line) for t, line in lines if line.strip().startswith("NEW external")]
    assert len(new) == len(r.new) == 1
    t, line = new[0]
    assert str(tmp_path / "crashers" / "external" / next(iter(r.new))) in line
    assert ended - t > 1.0                                    # said as it happened, not at the end


BIG_PARENT = """
import subprocess, sys
held = bytearray({mb} << 20)
for i in range(0, len(held), 4096):
    held[i] = 1                                   # resident: this process's peak RSS is above {mb} MiB
sys.exit(subprocess.run(sys.argv[1:]).returncode)
"""


def test_a_job_spawned_by_a_big_process_is_not_out_of_memory(tmp_path):
    """On Linux a child starts with its parent's peak RSS, which libFuzzer's -rss_limit_mb judges:
    an Atheris job spawned by a process that once held more than the limit used to be killed as
    out of memory one second in, on whatever input ran (the bench's log_replay row lost its run
    so, leaving oom-* files). The job must run its whole budget, and its own memory still counts."""
    out = tmp_path / "artifacts"
    out.mkdir()
    job = [sys.executable, "-m", "harness.engine.atheris_main", "--target", "log_header",
           "--crashers", str(tmp_path / "crashers"), "--stats", str(tmp_path / "stats.json"),
           "-rss_limit_mb=300", "-max_total_time=3", "-print_final_stats=1", f"-artifact_prefix={out}/",
           str(tmp_path / "corpus")]
    (tmp_path / "corpus").mkdir()
    run = subprocess.run([sys.executable, "-c", BIG_PARENT.format(mb=500), *job], cwd=ROOT, text=True,
                         capture_output=True, timeout=120)
    assert "out-of-memory" not in run.stderr and not list(out.iterdir()), run.stderr[-2000:]
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "stats.json").read_text())["execs"] > 1000     # it ran its 3 s
    assert not list((tmp_path / "crashers").rglob("crash.json"))             # nor an RSS finding of ours
