"""Nightly runs: the three reports with real data, the HTML rendered by headless Chromium, and a
nightly killed with SIGKILL midway that loses no crasher and no corpus file."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import project
from harness.engine.crashstore import CrashStore
from harness.engine.signature import Signature

ROOT = project.root()
TARGETS = ["log_replay", "publish_order"]


def workspace(tmp: Path) -> Path:
    for t in TARGETS:
        shutil.copytree(ROOT / "corpora" / t, tmp / "corpora" / t)
    (tmp / "crashers").mkdir()
    return tmp


def nightly(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "nightly", "--targets", *TARGETS, *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def nightly_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short nightly over TARGETS, its workspace; both tests below read it. Under xdist the
    workers share the session's temporary root, and a lock there makes the first one run it."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(root / "nightly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ws = root / "nightly-workspace"
        if not (ws / "run" / "summary.json").exists():
            shutil.rmtree(ws, ignore_errors=True)
            ws.mkdir()
            p = nightly(workspace(ws), "--budget", "16", "--jobs", "2", "--out", "run")
            out, _ = p.communicate(timeout=240)
            assert p.returncode == 0, out
    return ws


@pytest.mark.slow
def test_nightly_writes_three_reports_with_real_data(nightly_run):
    ws = nightly_run
    summary = json.loads((ws / "run" / "summary.json").read_text())
    assert {t["target"] for t in summary["targets"]} >= set(TARGETS)
    for name in TARGETS:                         # a target's shares (sweep, then adaptive) together
        shares = [t for t in summary["targets"] if t["target"] == name]
        assert sum(len(t["series"]) for t in shares) >= 3 and sum(t["execs"] for t in shares) > 0
    assert {s["target"] for s in summary["schedule"] if s["phase"] == "sweep"} == set(TARGETS)
    assert summary["coverage"]["total"] > 0 and "replay.py" in summary["coverage"]["files"]
    suite = ET.parse(ws / "run" / "junit.xml").getroot()
    assert int(suite.get("tests")) >= len(TARGETS) and suite.get("failures") == "0"
    html = (ws / "run" / "report.html").read_text()
    assert html.count("<polyline") >= 4 * len(TARGETS)


@pytest.mark.slow
def test_nightly_report_renders_in_headless_chromium(nightly_run, tmp_path):
    """The report's HTML as a browser builds it: the targets table and every series' points in
    the DOM, and a screenshot with something drawn. Only this part needs the browser."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; ./scripts/test installs it)")
    report = (nightly_run / "run" / "report.html").as_uri()
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", report],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'id="targets"' in dom and "log_replay" in dom and "publish_order" in dom
    points = [seg for seg in dom.split('points="')[1:]]
    assert len(points) >= 4 * len(TARGETS) and all(len(p.split('"')[0].split()) >= 2 for p in points)
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    f"--user-data-dir={tmp_path / 'chrome2'}", f"--screenshot={shot}", "--window-size=1100,1600",
                    report], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.slow
def test_sigkill_midway_loses_no_crasher_and_no_corpus_file(tmp_path):
    ws = workspace(tmp_path)
    store = CrashStore(ws / "crashers")
    sig = Signature.of("invariant", "IDX-DENSE", ["harness/famfs/index.py:add"])
    store.save("log_replay", sig, b"not a crasher any more")
    before = {p.relative_to(ws) for p in (ws / "corpora").rglob("*") if p.is_file()}
    p = nightly(ws, "--budget", "40", "--jobs", "2", "--out", "run")
    time.sleep(10)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(1)                                                    # its fuzzers die with it
    assert subprocess.run(["pgrep", "-f", f"atheris_main.*{ws}"], capture_output=True).returncode == 1
    after = {p.relative_to(ws) for p in (ws / "corpora").rglob("*") if p.is_file()}
    assert before <= after, before - after
    rec = store.fetch("log_replay", sig.key)                         # complete, untouched
    assert rec.count == 1 and rec.input == b"not a crasher any more"
    again = nightly(ws, "--budget", "12", "--jobs", "2", "--out", "run")
    out, _ = again.communicate(timeout=240)
    assert again.returncode == 0, out
    assert (ws / "corpora" / "log_replay" / "regress" / sig.key).read_bytes() == b"not a crasher any more"
    summary = json.loads((ws / "run" / "summary.json").read_text())
    assert [c["status"] for c in summary["crashers"]] == ["fixed"]
