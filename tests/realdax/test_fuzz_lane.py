"""`famfs-fuzz fuzz mount_e2e --dax real` files findings as ordinary crash folders with the
guest's console attached: a bug that only real device-dax shows (and the same input passes on
main), and a guest whose kernel dies inside a case.

Bugs are planted in a copy of the package (as tests/quality does), appended to a module so they
keep working while its insides change. The copy lives in the real-DAX cache folder, not under
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

from harness.realdax.kit import CACHE, REPO, Kit

# A DaxDevice of kind "real" (a /dev/daxX.Y) keeps a private copy of the device taken when it was
# opened instead of the shared mapping (what MAP_PRIVATE would do), so the daemon never sees the
# images written onto the device later. Every emulated lane stays green; only the guest disagrees
# with the model.
PRIVATE_COPY = ("harness/famfs/devices.py", """

_planted_init = DaxDevice.__init__


def _private_copy_init(self, mm, *args, kind, **kw):   # planted: a real device reads a private copy
    _planted_init(self, bytearray(mm) if kind == "real" else mm, *args, kind=kind, **kw)


DaxDevice.__init__ = _private_copy_init
""")

# A rescan on real devdax (every case's reload does one) crashes the guest's kernel.
PANIC = ("harness/famfs/resolver.py", """

_planted_rescan = Resolver.rescan


def _panicking_rescan(self, devices=()):        # planted: a rescan on real devdax kills the kernel
    if any(d.kind == "real" for d in self.devices):
        open("/proc/sysrq-trigger", "w").write("c")
    return _planted_rescan(self, devices)


Resolver.rescan = _panicking_rescan
""")


def _planted_copy(file: str, plant: str) -> Path:
    copy = CACHE / f"planted-{os.getpid()}"
    shutil.rmtree(copy, ignore_errors=True)
    for part in ("harness", "targets", "corpora"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "regress"))
    with open(copy / file, "a") as f:
        f.write(plant)
    return copy


def _cli(cwd: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd), FAMFS_FUZZ_REALDAX_CACHE=str(CACHE))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.slow
def test_real_lane_files_a_real_devdax_only_bug_with_its_console(kit: Kit) -> None:
    copy = _planted_copy(*PRIVATE_COPY)
    try:
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


@pytest.mark.slow
def test_a_guest_that_dies_in_a_case_is_a_finding_against_that_case(kit: Kit) -> None:
    copy = _planted_copy(*PANIC)
    try:
        crashers = copy / "crashers"
        run = _cli(copy, "fuzz", "mount_e2e", "--dax", "real", "--runs", "3", "--seed", "2",
                   "--crashers", str(crashers), "--json")
        assert run.returncode == 1, run.stdout + run.stderr
        doc = json.loads(run.stdout)
        assert doc["execs"] == 1 and doc["findings"] == 1, doc      # the first case never finished
        key = next(iter(doc["new_signatures"]))
        folder = crashers / "mount_e2e" / key
        record = json.loads((folder / "crash.json").read_text())
        assert record["signature"]["kind"] == "guest-death", record["title"]
        assert "sysrq: Trigger a crash" in (folder / "console.log").read_text()
        assert (folder / "input").read_bytes()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
