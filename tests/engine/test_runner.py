"""The case runner: a hang in famfs is a timeout finding, a hang in the harness is ours, an RSS
blow-up is a finding, and a new crash gets its reproduction rate."""
from __future__ import annotations

import time

from harness import project
from harness.engine.crashstore import CrashStore


def _runner(tmp_path, one_input, **kw):
    from harness.engine.registry import Target
    from harness.engine.runner import CaseRunner
    return CaseRunner(Target(name="t", one_input=one_input, timeout_s=0.2), CrashStore(tmp_path), **kw)


def _famfs_spin():
    """A function whose code lives (by its file name) in harness/famfs: a famfs hang."""
    ns: dict = {}
    path = project.root() / "harness" / "famfs" / "spin.py"
    exec(compile("import time\ndef spin(data):\n    while True:\n        time.sleep(0.01)\n", str(path), "exec"), ns)
    return ns["spin"]


def test_a_hang_in_famfs_is_a_timeout_finding_with_the_stack_it_sat_in(tmp_path):
    r = _runner(tmp_path, _famfs_spin(), repro_times=1)
    sig = r.run_one(b"x")
    assert sig is not None and sig.kind == "timeout"
    assert sig.frames == ("harness/famfs/spin.py:spin",)
    rec = CrashStore(tmp_path).fetch("t", sig.key)
    assert rec.reproduced == "1/1"
    assert "stack at the timeout" in rec.traceback and "spin.py" in rec.traceback


def test_a_hang_in_the_harness_is_a_harness_hang_not_a_famfs_finding(tmp_path):
    def model_loops_forever(data: bytes) -> None:
        while True:
            time.sleep(0.01)
    r = _runner(tmp_path, model_loops_forever, repro_times=0)
    sig = r.run_one(b"x")
    assert sig is not None and sig.kind == "harness-hang"
    assert sig.frames == ("tests/engine/test_runner.py:model_loops_forever",)
    assert "model_loops_forever" in CrashStore(tmp_path).fetch("t", sig.key).traceback


def test_an_rss_blow_up_is_a_finding(tmp_path):
    hog = []
    r = _runner(tmp_path, lambda d: hog.append(bytearray(1 << 20)), rss_limit_mb=1, repro_times=0)
    sigs = {r.run_one(b"x") for _ in range(64)}
    assert any(s is not None and s.kind == "rss" for s in sigs)


def test_a_new_crash_gets_its_reproduction_rate(tmp_path):
    flaky = iter([True, True, False] * 10)

    def once(data: bytes) -> None:
        if next(flaky):
            raise ValueError("boom")
    r = _runner(tmp_path, once, repro_times=4)
    sig = r.run_one(b"x")
    assert CrashStore(tmp_path).fetch("t", sig.key).reproduced == "3/4"      # T, F, T, T after the first
