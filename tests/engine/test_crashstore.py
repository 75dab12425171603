"""The crash store: save, repeat, the sample ring, fetch, move to regress; parallel and killed savers."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from harness.engine.crashstore import CrashStore, ReadOnlyCrashStore
from harness.engine.errors import HarnessError
from harness.engine.signature import Signature


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
