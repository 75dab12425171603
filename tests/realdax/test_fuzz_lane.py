"""`famfs-fuzz fuzz mount_e2e --dax real` finds a bug that only real device-dax shows, files it
as an ordinary crash folder with the guest's console attached, and the same input passes on main.

The bug is planted in a copy of the package (as tests/quality does): a `DaxDevice` of kind
"real" (a /dev/daxX.Y) keeps a private copy of the device taken when it was opened instead of
the shared mapping (what MAP_PRIVATE would do), so the daemon never sees the images written
onto the device later. Every emulated lane stays green; only the guest, where the daemon serves
/dev/dax0.0.., disagrees with the model. The copy lives in the real-DAX cache folder, not under
/tmp: the guest mounts its own tmpfs on /tmp.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.engine.realdax import CACHE, REPO, Kit

PLANT = ("harness/famfs/devices.py",
         "        self._mm: mmap.mmap | None = mm\n",
         "        self._mm: mmap.mmap | None = bytearray(mm) if kind == \"real\" else mm  # type: ignore[assignment]\n")


def _cli(cwd: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd), FAMFS_FUZZ_REALDAX_CACHE=str(CACHE))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.slow
def test_real_lane_files_a_real_devdax_only_bug_with_its_console(kit: Kit) -> None:
    copy = CACHE / f"planted-{os.getpid()}"
    shutil.rmtree(copy, ignore_errors=True)
    try:
        for part in ("harness", "targets", "corpora"):
            shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "regress"))
        file, old, new = PLANT
        text = (copy / file).read_text()
        assert text.count(old) == 1, f"plant site not found in {file}"
        (copy / file).write_text(text.replace(old, new))
        crashers = copy / "crashers"
        run = _cli(copy, "fuzz", "mount_e2e", "--dax", "real", "--runs", "12", "--max-time", "60",
                   "--seed", "1", "--crashers", str(crashers), "--json")
        assert run.returncode == 1, run.stdout + run.stderr
        doc = json.loads(run.stdout)
        assert doc["engine"] == "real-dax" and doc["execs"] >= 1 and doc["new_signatures"], doc
        key, title = next(iter(doc["new_signatures"].items()))
        folder = crashers / "mount_e2e" / key
        record = json.loads((folder / "crash.json").read_text())
        assert record["signature"]["kind"] == "invariant", title          # the oracle's finding
        assert record["mode"] == "real-dax" and record["extra"]["dax"] == "real"
        assert "realdax: up" in (folder / "console.log").read_text()       # the guest's console
        assert record["reproduced"] and record["reproduced"].startswith("3/"), record["reproduced"]
        # The same input through the real lane on main: no finding.
        fixed = _cli(REPO, "fuzz", "mount_e2e", "--dax", "real", "--input", str(folder / "input"),
                     "--crashers", str(copy / "crashers-main"), "--json")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert json.loads(fixed.stdout)["execs"] == 1
    finally:
        shutil.rmtree(copy, ignore_errors=True)
