"""The external target against a small C checker of our own with three deliberate bugs, built
with AddressSanitizer at test time: each bug is found, with its own signature, within a minute;
crash folders and repro work through the CLI; batch mode; the differential mode."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cases.external import python_program
from harness import project
from harness.cases.external import External, ExternalFinding, external_case, parse_sanitizer, program_tag
from harness.gen import seeds
from harness.gen.corrupt import set_field
from harness.gen.decode import log_image

HERE = Path(__file__).resolve().parent
ROOT = project.root()
CC = shutil.which("gcc") or shutil.which("cc")


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler (gcc) on this machine")
    out = tmp_path_factory.mktemp("cc") / "buggy_checker"
    built = subprocess.run([CC, "-g", "-O1", "-fsanitize=address", "-fno-omit-frame-pointer", "-w", "-o", str(out),
                            str(HERE / "buggy_checker.c")], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"cannot build with -fsanitize=address: {built.stderr[-300:]}")
    return str(out)


@pytest.mark.slow
def test_each_deliberate_bug_is_found_with_its_own_signature(checker, monkeypatch):
    """A blind random search in process finds the five single-edit bugs, each under its own
    signature (the interleaved-entry combination, BUG 4, is the AFL++ lane's: test_afl_lane)."""
    from tests.cases.external.test_afl_lane import BUGS, bug_of
    monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_CMD", f"{checker} {{image}}")
    rng = random.Random(1)
    found: dict[str, float] = {}
    titles: dict[str, set[str]] = {}
    want = set(BUGS) - {"BUG4 interleave x3 chunk"}
    start = time.monotonic()
    while not want <= set(found) and time.monotonic() - start < 60:
        data = bytes([rng.randrange(2)]) + rng.randbytes(rng.randint(8, 200))
        if data[0] == 0:                                   # raw: a seed image with a byte or two changed
            img = bytearray(rng.choice(SEEDS))
            for _ in range(rng.randint(1, 3)):
                img[rng.randrange(200, len(img))] = rng.randrange(256)
            data = b"\x00" + bytes(img)
        try:
            external_case(data)
        except ExternalFinding as e:
            bug = bug_of(e.signature.as_dict()) or e.signature.title
            found.setdefault(bug, time.monotonic() - start)
            titles.setdefault(bug, set()).add(e.signature.title)
    print(f"\nfound: {found}")
    assert want <= set(found), found
    assert set(found) <= set(BUGS), found                       # nothing but the deliberate bugs
    for bug, ts in titles.items():                              # no two bugs share a signature
        assert not any(ts & other for b, other in titles.items() if b != bug)


SEEDS = [img for img in seeds.compact_images()]


@pytest.mark.slow
def test_cli_records_sanitizer_crashers_and_repro_works(checker, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "external", "--cmd", f"{checker} {{image}}",
                          "--max-time", "20", "--crashers", str(tmp_path / "crashers"), "--seed", "2", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    doc = json.loads(run.stdout)
    assert run.returncode == 1 and doc["new_signatures"], run.stderr[-2000:]
    key = next(iter(doc["new_signatures"]))
    folder = tmp_path / "crashers" / "external" / key
    record = json.loads((folder / "crash.json").read_text())
    assert record["signature"]["kind"] in ("sanitizer", "assert") and "buggy_checker.c:check" in record["title"]
    tag = program_tag(f"{checker} {{image}}")                  # keyed by the program: crash, corpus, logs
    assert record["signature"]["site"] == tag and all(f"fuzz-{tag}-" in log for log in doc["logs"])
    assert (ROOT / "runs" / "external" / tag / "corpus").is_dir()
    env["FAMFS_FUZZ_EXTERNAL_CMD"] = f"{checker} {{image}}"
    rep = subprocess.run([sys.executable, "-m", "harness.cli", "repro", str(folder), "--times", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 1, rep.stdout + rep.stderr


def test_batch_mode_restarts_after_a_crash(checker):
    e = External(f"{checker} {{image}}", batch=True, timeout=5)
    good = bytes(log_image(SEEDS[1]).device)
    bad = bytearray(good)
    set_field(bad, "log_header", "next_index", 200)
    outcomes = [e.run([img]) for img in (good, bytes(bad), good)]
    e.close()
    assert [o.accepted for o in outcomes] == [True, False, True]
    assert outcomes[1].signature is not None and outcomes[1].signature.what.startswith("AddressSanitizer")
    assert outcomes[0].files == outcomes[2].files and outcomes[0].files


def test_differential_mode_finds_a_disagreement(tmp_path, monkeypatch):
    accepts_all = tmp_path / "accepts_all.py"
    accepts_all.write_text("import sys\nsys.exit(0)\n")
    monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_CMD", f"{sys.executable} {accepts_all} {{image}}")
    monkeypatch.setenv("FAMFS_FUZZ_DIFFERENTIAL", "1")
    img = bytearray(log_image(SEEDS[1]).device)
    external_case(b"\x00" + SEEDS[1])                       # a valid image: both accept
    img[0] ^= 1                                             # a broken superblock: we refuse, it accepts
    with pytest.raises(ExternalFinding) as f:
        external_case(b"\x00" + bytes(img[:200]) + SEEDS[1][200:])
    assert f.value.signature.kind == "differential"


def test_parse_sanitizer_reports():
    asan = ("==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1 at pc 0x2\n"
            "READ of size 8 at 0x1 thread T0\n"
            "    #0 0x4005 in famfs_build_bitmap /src/famfs_alloc.c:120:5\n"
            "    #1 0x4006 in famfs_fsck_scan /src/famfs_lib.c:900\n\n"
            "freed by thread T0 here:\n    #0 0x1 in free\n")
    r = parse_sanitizer(asan)
    assert (r.tool, r.bug, r.access) == ("AddressSanitizer", "heap-use-after-free", "READ 8")
    assert r.frames[:2] == ("famfs_alloc.c:famfs_build_bitmap", "famfs_lib.c:famfs_fsck_scan")
    ub = parse_sanitizer("/src/x.c:10:5: runtime error: shift exponent 70 is too large for 64-bit type\n")
    assert ub.tool == "UndefinedBehaviorSanitizer" and ub.bug.startswith("shift-exponent")
    assert parse_sanitizer("all good") is None


def test_batch_mode_reads_lines_that_arrive_in_one_chunk(tmp_path):
    """A batch program that writes its `file` lines and its verdict in one write: every line is
    seen at once, none waits in a reader's buffer until the timeout (the flake CI once showed)."""
    wrapper = python_program(tmp_path, "one_write", "import sys\nfor _ in sys.stdin:\n"
                             "    sys.stdout.write('file a\\nfile b\\nok\\n')\n    sys.stdout.flush()\n")
    e = External(f"{wrapper} {{image}}", batch=True, timeout=30)
    start = time.monotonic()
    outcomes = [e.run([b"image"]) for _ in range(3)]
    e.close()
    assert [(o.accepted, o.files) for o in outcomes] == [(True, ["a", "b"])] * 3
    assert time.monotonic() - start < 15, "a verdict waited for the timeout"
