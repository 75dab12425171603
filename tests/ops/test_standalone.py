"""Standalone Atheris fuzzers for ClusterFuzzLite / OSS-Fuzz: what `export` writes, that each runs
as a plain script on main without a finding, and that a planted bug ends the fuzzer with an
exception named after the finding's signature."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from harness import project
from harness.engine.registry import load, names
from harness.ops.standalone import dictionary, export, standalone_names

ROOT = project.root()


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


def _seeds(out: Path, name: str, where: Path) -> Path:
    with zipfile.ZipFile(out / f"{name}_fuzzer_seed_corpus.zip") as z:
        z.extractall(where)
    return where


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("main") / "out"
    export(out, ROOT / "corpora")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", standalone_names())
def test_exported_fuzzer_runs_500_inputs_clean_on_main(tmp_path, exported, name):
    seeds = _seeds(exported, name, tmp_path / "seeds")
    r = _run(exported / f"{name}_fuzzer.py", ROOT, "-runs=500", f"-dict={exported / 'famfs.dict'}",
             f"-artifact_prefix={tmp_path}/", str(seeds))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    # libFuzzer rereads its output corpus (the seed folder, freshly extracted) every second and
    # runs each seed that never entered its corpus, without checking -runs; when that reread falls
    # in the last runs, the run ends up to one seed folder past 500 (CI saw 543), never before.
    done = re.search(r"Done (\d+) runs", r.stderr)
    assert done and 500 <= int(done[1]) <= 500 + len(list(seeds.iterdir())), r.stderr[-2000:]
    assert "INITED" in r.stderr and "cov:" in r.stderr          # instrumented famfs: coverage seen
    assert not list(tmp_path.glob("crash-*"))


# One copy of famfs with two planted crashes: replay() raises on every image, and so does the
# kernel side's one table lookup. Every standalone target reaches one of the two on its seeds
# (this measures the packaging, how a finding ends the script, not search).
PLANTED = (
    ("harness/famfs/replay.py", '    sb = check_superblock(device, device_size)\n',
     '    raise RuntimeError("planted: replay refuses everything")\n'),
    ("harness/famfs/kernel.py", '        self.lookups += 1\n        view = yield from self.table.read_steps(index)\n',
     '        self.lookups += 1\n        raise RuntimeError("planted: lookup fails")\n'),
)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    copy = tmp_path_factory.mktemp("planted") / "buggy"
    for part in ("harness", "targets", "corpora"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in PLANTED:
        text = (copy / file).read_text()
        assert text.count(old) == 1, f"plant site not found in {file}"
        (copy / file).write_text(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=str(copy))
    subprocess.run([sys.executable, "-m", "harness.ops.standalone", str(copy / "out"), "corpora"],
                   cwd=copy, env=env, check=True, capture_output=True)
    return copy, copy / "out"


@pytest.mark.slow
@pytest.mark.parametrize("name", standalone_names())
def test_a_planted_bug_ends_the_fuzzer_with_a_crash_file_and_its_signature(tmp_path, planted, name):
    copy, out = planted
    seeds = _seeds(out, name, tmp_path / "seeds")
    r = _run(out / f"{name}_fuzzer.py", copy, "-runs=500", f"-artifact_prefix={tmp_path}/", str(seeds))
    assert r.returncode != 0, r.stderr[-2000:]
    said = r.stdout + r.stderr                       # atheris prints the uncaught exception on stdout
    assert "Uncaught Python exception" in said and "famfs_" in said and "planted" in said, said[-3000:]
    crashes = list(tmp_path.glob("crash-*"))
    assert crashes, "libFuzzer wrote no crashing input"
    assert crashes[0].read_bytes() in {p.read_bytes() for p in seeds.iterdir()} | {b""}


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
