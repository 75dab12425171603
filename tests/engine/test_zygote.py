"""A job forked from the Atheris zygote fuzzes as a new interpreter does, and reports its end."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.engine.zygote import Zygote

INITED = re.compile(r"INITED cov: (\d+) ft: (\d+)")


def _args(tmp: Path, target: str, *flags: str) -> list[str]:
    return ["--target", target, "--crashers", str(tmp / "crashers"), "--stats", str(tmp / f"{target}.json"),
            *flags, str(Path("corpora") / target)]


def _inited(log: Path) -> tuple[int, int]:
    m = INITED.search(log.read_text(errors="replace"))
    assert m, log.read_text(errors="replace")[-2000:]
    return int(m.group(1)), int(m.group(2))


@pytest.mark.slow
def test_a_forked_job_has_the_coverage_of_a_new_interpreter(tmp_path):
    fresh = tmp_path / "fresh.log"
    with open(fresh, "w") as out:
        subprocess.run([sys.executable, "-m", "harness.engine.atheris_main",
                        *_args(tmp_path, "log_header", "-runs=0")], stdout=out, stderr=subprocess.STDOUT,
                       check=True, timeout=120)
    z = Zygote(["log_header", "fmap_wire"], tmp_path / "zygote.log")
    try:
        job = z.spawn(_args(tmp_path, "log_header", "-runs=0"), tmp_path / "forked.log", {"FAMFS_X": "1"})
        assert job.wait(120) == 0
        again = z.spawn(_args(tmp_path, "fmap_wire", "-runs=0"), tmp_path / "wire.log", {})
        assert again.wait(120) == 0 and again.pid != job.pid
    finally:
        z.close()
    assert _inited(tmp_path / "forked.log") == _inited(fresh)         # same instrumented famfs, same corpus
    assert _inited(tmp_path / "wire.log")[0] > 0
    assert json.loads((tmp_path / "log_header.json").read_text())["execs"] > 0


@pytest.mark.slow
def test_a_terminated_job_writes_its_counters_and_ends_cleanly(tmp_path):
    z = Zygote(["log_header"], tmp_path / "zygote.log")
    try:
        job = z.spawn(_args(tmp_path, "log_header", "-runs=100000000"), tmp_path / "job.log", {})
        deadline = time.monotonic() + 120
        while "INITED" not in (tmp_path / "job.log").read_text(errors="replace"):
            assert job.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        job.terminate()
        assert job.wait(30) == 0
    finally:
        z.close()
    assert json.loads((tmp_path / "log_header.json").read_text())["execs"] > 0
    assert z.proc.poll() is not None                                    # closing the zygote ends it
