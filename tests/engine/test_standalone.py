"""Standalone Atheris fuzzers for ClusterFuzzLite / OSS-Fuzz: what `export` writes, that each runs
as a plain script on main without a finding, and that a planted bug ends the fuzzer with an
exception named after the finding's signature."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from harness.engine.registry import load, names
from harness.engine.standalone import dictionary, export, standalone_names

ROOT = Path(__file__).resolve().parents[2]


def test_every_in_process_target_is_exported_with_its_corpus_options_and_the_dictionary(tmp_path):
    written = export(tmp_path, ROOT / "corpora")
    expected = {n for n in names() if not load(n).uses_fuse and not load(n).needs_command}
    assert {w.removesuffix("_fuzzer") for w in written} == expected == set(standalone_names())
    assert "mount_e2e" not in expected and "external" not in expected and "log_replay" in expected
    for w in written:
        script = tmp_path / f"{w}.py"
        assert os.access(script, os.X_OK) and script.read_text().startswith("#!/usr/bin/env python3")
        with zipfile.ZipFile(tmp_path / f"{w}_seed_corpus.zip") as z:
            import hashlib
            members = z.namelist()
            assert members and all(hashlib.sha1(z.read(m)).hexdigest() == m for m in members)
        opts = (tmp_path / f"{w}.options").read_text()
        assert opts.startswith("[libfuzzer]") and "dict = famfs.dict" in opts
    entries = [line for line in (tmp_path / "famfs.dict").read_text().splitlines() if line and line[0] != "#"]
    assert entries == dictionary().splitlines()[1:]
    assert 'super_magic="\\xff\\x82\\xb2\\x87\\x00\\x00\\x00\\x00"' in entries


def _run(script: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.slow
def test_exported_fuzzers_run_clean_on_main(tmp_path):
    out = tmp_path / "out"
    export(out, ROOT / "corpora", targets=["log_replay", "fmap_wire", "log_structured"])
    for name in ("log_replay", "fmap_wire", "log_structured"):
        seeds = tmp_path / f"seeds-{name}"
        with zipfile.ZipFile(out / f"{name}_fuzzer_seed_corpus.zip") as z:
            z.extractall(seeds)
        r = _run(out / f"{name}_fuzzer.py", ROOT, "-runs=300", f"-dict={out / 'famfs.dict'}", str(seeds))
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Done 300 runs" in r.stderr or "DONE" in r.stderr, r.stderr[-2000:]
        assert "INITED" in r.stderr and "cov:" in r.stderr          # instrumented famfs: coverage seen


@pytest.mark.slow
def test_a_planted_bug_ends_the_fuzzer_with_its_signature(tmp_path):
    copy = tmp_path / "buggy"
    for part in ("harness", "targets", "corpora"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    replay = copy / "harness" / "famfs" / "replay.py"
    old = "        if check_crc and crc32(log[at + crc_start:at + crc_end]) != u64(log, at + crc_at)[0]:\n"
    text = replay.read_text()
    assert text.count(old) == 1
    replay.write_text(text.replace(old, "        if False:\n"))          # entry CRCs not checked
    env = dict(os.environ, PYTHONPATH=str(copy))
    subprocess.run([sys.executable, "-m", "harness.engine.standalone", str(tmp_path / "out"), "corpora"],
                   cwd=copy, env=env, check=True, capture_output=True)
    seeds = tmp_path / "seeds"
    with zipfile.ZipFile(tmp_path / "out" / "log_replay_fuzzer_seed_corpus.zip") as z:
        z.extractall(seeds)
    r = _run(tmp_path / "out" / "log_replay_fuzzer.py", copy, "-max_total_time=60",
             f"-artifact_prefix={tmp_path}/", str(seeds))
    assert r.returncode != 0, r.stderr[-2000:]
    said = r.stdout + r.stderr                       # atheris prints the uncaught exception on stdout
    assert "Uncaught Python exception" in said and "famfs_invariant_LOG_PREFIX_" in said, said[-3000:]
    assert list(tmp_path.glob("crash-*")), "libFuzzer wrote no crashing input"


def test_workflows_name_each_clusterfuzzlite_mode():
    wf = ROOT / ".github" / "workflows"
    modes = {}
    for path in wf.glob("cflite_*.yml"):
        doc = yaml.safe_load(path.read_text())
        steps = [s for job in doc["jobs"].values() for s in job["steps"]]
        run = next(s for s in steps if s["uses"].startswith("google/clusterfuzzlite/actions/run_fuzzers"))
        build = next(s for s in steps if s["uses"].startswith("google/clusterfuzzlite/actions/build_fuzzers"))
        assert build["with"]["language"] == "python"
        sanitizer = run["with"]["sanitizer"]
        if sanitizer == "${{ matrix.sanitizer }}":
            (sanitizer,) = next(iter(doc["jobs"].values()))["strategy"]["matrix"]["sanitizer"]
        modes[run["with"]["mode"]] = sanitizer
        assert "storage-repo" in run["with"]
    assert modes == {"code-change": "address", "batch": "address", "prune": "address", "coverage": "coverage"}
    project = yaml.safe_load((ROOT / ".clusterfuzzlite" / "project.yaml").read_text())
    assert project["language"] == "python" and project["fuzzing_engines"] == ["libfuzzer"]


def test_build_script_packs_every_fuzzer_with_its_files(tmp_path):
    """.clusterfuzzlite/build.sh run with stand-ins for the base image's pip3 and
    compile_python_fuzzer (which record their arguments): every fuzzer is packed with its target
    as a hidden import, and $OUT gets its options, seed corpus and the dictionary."""
    bin_dir, src, out = tmp_path / "bin", tmp_path / "src", tmp_path / "out"
    for d in (bin_dir, src, out):
        d.mkdir()
    (src / "famfs-fuzz").symlink_to(ROOT)
    (bin_dir / "pip3").write_text("#!/bin/sh\necho \"pip3 $*\" >> \"$OUT/log\"\n")
    (bin_dir / "compile_python_fuzzer").write_text(
        "#!/bin/sh\necho \"compile $*\" >> \"$OUT/log\"\nn=$(basename \"$1\" .py)\ncp \"$1\" \"$OUT/$n\"\n")
    (bin_dir / "python3").symlink_to(sys.executable)
    for f in bin_dir.iterdir():
        if not f.is_symlink():
            f.chmod(0o755)
    env = dict(os.environ, SRC=str(src), OUT=str(out), PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(ROOT))
    subprocess.run(["bash", str(ROOT / ".clusterfuzzlite" / "build.sh")], env=env, check=True, timeout=120)
    log = (out / "log").read_text().splitlines()
    assert log[0] == "pip3 install ."
    for name in standalone_names():
        assert (out / f"{name}_fuzzer").is_file() and (out / f"{name}_fuzzer.options").is_file()
        assert (out / f"{name}_fuzzer_seed_corpus.zip").is_file()
        assert any(line.endswith(f"--hidden-import targets.{name} --collect-submodules harness") for line in log)
    assert (out / "famfs.dict").read_text() == dictionary()
