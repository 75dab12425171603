"""Crash triage: a crash folder copied elsewhere reproduces and minimizes as it is."""
from __future__ import annotations

import json

import pytest

from harness.engine.crashstore import CrashStore
from harness.engine.errors import HarnessError
from harness.engine.signature import Signature


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
