"""Engine parts that stand alone: signatures, the crash store, minimization, reproduction."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from harness.engine.crashstore import CrashStore, HarnessError, ReadOnlyCrashStore
from harness.engine.minimize import minimize, minimize_bytes
from harness.engine.repro import Outcome, reproduce
from harness.engine.signature import Signature
from harness.famfs import layout as L
from harness.famfs.invariants import Invariant
from harness.oracle.invariants import InvariantViolation


def famfs_crash() -> BaseException:
    try:
        L.SimpleFmap.of([L.SimpleExtent(0, 0, 0)] * 17)      # ValueError inside harness/famfs
    except ValueError as e:
        return e
    raise AssertionError("no error")


def test_signature_keeps_famfs_frames_only_and_is_stable():
    a, b = Signature.from_exception(famfs_crash()), Signature.from_exception(famfs_crash())
    assert a == b and a.key == b.key and len(a.key) == 12
    assert a.kind == "exception" and a.what == "ValueError"
    assert a.frames[0] == "harness/famfs/layout.py:_slots"
    assert not any("tests/" in f for f in a.frames)
    assert ":" in a.title and not any(ch.isdigit() for ch in a.frames[0].split(":")[1])


def test_signature_of_an_invariant_violation():
    s = Signature.from_exception(InvariantViolation(Invariant.IDX_LOOKUP, "x"))
    assert (s.kind, s.what) == ("invariant", "IDX-LOOKUP")
    assert Signature.from_dict(s.as_dict()) == s
    assert Signature.of("invariant", "IDX-DENSE").key != s.key


def test_store_save_repeat_ring_fetch_move(tmp_path):
    store = CrashStore(tmp_path / "crashers")
    sig = Signature.of("invariant", "IDX-DENSE", ["harness/famfs/index.py:add"])
    path, new = store.save("t", sig, b"first", traceback="tb", seed=3, mode="transplant",
                           repro_cmd="famfs-fuzz repro x")
    assert new and (path / "title").read_text().strip() == sig.title
    for k in range(12):
        assert store.save("t", sig, b"more%d" % k)[1] is False
    rec = store.fetch("t", sig.key)
    assert (rec.count, rec.input, rec.mode, rec.seed) == (13, b"first", "transplant", 3)
    assert len(list((path / "samples").iterdir())) == 12          # 8 first samples kept for good + 4 in the ring
    store.set_reproduced("t", sig.key, 9, 10)
    store.set_minimized("t", sig.key, b"m")
    assert store.fetch("t", sig.key).reproduced == "9/10" and store.fetch("t", sig.key).minimized == b"m"
    dest = store.move_to_regress("t", sig.key, tmp_path / "corpora")
    assert dest.read_bytes() == b"m" and not path.exists()
    ro = ReadOnlyCrashStore(tmp_path / "crashers")
    with pytest.raises(HarnessError):
        ro.save("t", sig, b"x")


def _saver(root: str, n: int, key: str) -> None:
    store = CrashStore(Path(root))
    for k in range(n):
        store.save("t", Signature.of("invariant", key), b"%d" % k)


def test_parallel_savers_lose_no_count(tmp_path):
    procs = [multiprocessing.Process(target=_saver, args=(str(tmp_path), 50, "SAME")) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rec = CrashStore(tmp_path).fetch("t", Signature.of("invariant", "SAME").key)
    assert rec.count == 100


def test_killed_saver_leaves_only_complete_folders(tmp_path):
    for round_ in range(6):
        p = multiprocessing.Process(target=_saver, args=(str(tmp_path), 10_000, f"K{round_ % 3}"))
        p.start()
        time.sleep(0.15 + 0.05 * round_)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
    folders = [d for d in (tmp_path / "t").iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert folders
    for d in folders:
        doc = json.loads((d / "crash.json").read_text())
        assert doc["count"] >= 1 and (d / "input").read_bytes() != b"" and (d / "title").exists()


def test_minimize_list_and_bytes():
    r = minimize(list(range(60)), lambda c: 3 in c and 17 in c)
    assert r.value == [3, 17]
    calls = []
    r = minimize(list(range(60)), lambda c: calls.append(1) or 3 in c, max_steps=5)
    assert len(calls) <= 5
    blob = bytes(range(1, 250)) * 4
    r = minimize_bytes(blob, lambda d: b"\x07" in d and b"\x09" in d)
    assert sorted(r.value) == [7, 9] and r.final_size == 2 < r.original_size


class Fake:
    def __init__(self, pattern: list[bool]):
        self.pattern, self.i = pattern, 0

    def run(self, data: bytes) -> Outcome:
        hit = self.pattern[self.i % len(self.pattern)]
        self.i += 1
        return Outcome(Signature.of("invariant", "DATA") if hit else None)


@pytest.mark.parametrize("pattern, k", [([True], 10), ([True, False], 5), ([False], 0)])
def test_reproduce_counts_k_of_n(pattern, k):
    r = reproduce(Fake(pattern), b"x", Signature.of("invariant", "DATA"), times=10)
    assert (r.k, r.n) == (k, 10)


def _runner(tmp_path, one_input, **kw):
    from harness.engine.registry import Target
    from harness.engine.runner import CaseRunner
    return CaseRunner(Target(name="t", one_input=one_input, timeout_s=0.2), CrashStore(tmp_path), **kw)


def _famfs_spin():
    """A function whose code lives (by its file name) in harness/famfs: a famfs hang."""
    ns: dict = {}
    path = Path(__file__).resolve().parents[2] / "harness" / "famfs" / "spin.py"
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
    assert sig.frames == ("tests/engine/test_engine.py:model_loops_forever",)
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


def test_a_crash_folder_copied_elsewhere_reproduces_as_it_is(tmp_path):
    """repro and minimize read the target from crash.json, not from the folder's parent name."""
    import shutil
    import subprocess
    import sys

    from harness.engine.crashers import minimize, repro
    store = CrashStore(tmp_path / "crashers")
    sig = Signature.of("invariant", "DATA", ["harness/famfs/kernel.py:read_steps"])
    folder, _ = store.save("log_replay", sig, b"\x00" * 64)
    copy = tmp_path / "bug-report-1234" / "renamed"          # parent is not a target name
    shutil.copytree(folder, copy)
    r = repro(copy, times=3)
    assert (r.target, r.k, r.n) == ("log_replay", 0, 3)
    assert json.loads((copy / "crash.json").read_text())["reproduced"] == "0/3"   # written to the copy
    assert json.loads((folder / "crash.json").read_text())["reproduced"] is None  # not to the original
    with pytest.raises(HarnessError, match="does not reproduce"):
        minimize(copy)                                        # the target loaded; the input is clean
    cli = subprocess.run([sys.executable, "-m", "harness.cli", "repro", str(copy), "--times", "2"],
                         capture_output=True, text=True)
    assert cli.returncode == 0 and "unknown target" not in cli.stderr, cli.stderr
    assert "log_replay" in cli.stdout
    (copy / "crash.json").write_text("{}")
    with pytest.raises(HarnessError, match="names no target"):
        repro(copy, times=1)
