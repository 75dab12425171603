"""The external target's defects of issue 14, each pinned: asserts and allocation-size errors are
parsed, the whole (bounded) sanitizer report is kept, crash keys / corpus / logs depend on the
program, batch mode passes the command's arguments, differential findings name our rejection
and flag escaping paths whatever the verdict, images are written sparse, crash folders keep
more samples; and the AFL++ custom mutator runs under the system Python with the standard
library only."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cases.external import python_program
from harness import project
from harness.engine import crashstore
from harness.ops.afl import afl_argv, import_queue
from harness.engine.crashstore import CrashStore
from harness.engine.errors import HarnessError
from harness.cases.external import (REPORT_LIMIT, External, ExternalFinding, ExternalOutcome, batch_argv, classify,
                                     differential, external_case, parse_assert, parse_sanitizer, program_corpus,
                                     program_tag, report_text, seed_corpus, write_sparse)
from harness.engine.signature import Signature
from harness.gen import seeds
from harness.gen.decode import log_image

ROOT = project.root()
SEEDS = list(seeds.compact_images())

GLIBC_ASSERT = "fsck: famfs_lib.c:412: famfs_check_log: Assertion `entry->type <= FAMFS_LOG_ACCESS' failed.\n"
ASAN_ABORT = (GLIBC_ASSERT + "AddressSanitizer:DEADLYSIGNAL\n"
              "==7==ERROR: AddressSanitizer: ABRT on unknown address 0x000000000007 (pc 0x7f bp 0x1 T0)\n"
              "    #0 0x7f1 in __pthread_kill_implementation nptl/pthread_kill.c:44:76\n"
              "    #1 0x7f2 in raise signal/../sysdeps/posix/raise.c:26:13\n"
              "    #2 0x7f3 in abort stdlib/abort.c:79:7\n"
              "    #3 0x7f4 in __assert_fail_base assert/assert.c:92:3\n"
              "    #4 0x7f5 in __assert_fail (/lib/x86_64-linux-gnu/libc.so.6+0x3a3d5)\n"
              "    #5 0x401 in famfs_check_log /src/famfs_lib.c:412:2\n"
              "    #6 0x402 in famfs_fsck_scan /src/famfs_lib.c:900:9\n\n"
              "SUMMARY: AddressSanitizer: ABRT nptl/pthread_kill.c:44:76 in __pthread_kill_implementation\n")


def test_asserts_are_parsed_and_two_asserts_get_two_signatures():
    a = parse_assert(ASAN_ABORT)
    assert (a.file, a.function, a.expression) == ("famfs_lib.c", "famfs_check_log", "entry->type <= FAMFS_LOG_ACCESS")
    sig = classify(-6, ASAN_ABORT, False, "external")
    assert sig.kind == "assert" and sig.frames[0] == "famfs_lib.c:famfs_check_log"
    assert not any(f.split(":")[-1] in ("raise", "abort", "__assert_fail", "__pthread_kill_implementation")
                   for f in sig.frames), sig.frames                       # libc's frames are not the bug
    other = classify(-6, "logplay: famfs_log.c:77: void famfs_logplay(int): Assertion `n < 16' failed.\n",
                     False, "external")
    assert other.kind == "assert" and other.frames[0] == "famfs_log.c:famfs_logplay" and other.key != sig.key
    assert classify(-6, "", False, "external").what == "SIGABRT"           # a bare abort stays a signal


def test_allocation_size_too_big_is_named_by_the_summary():
    text = ("==9==ERROR: AddressSanitizer: requested allocation size 0xffffffffffffff00 (0x0 after adjustments "
            "for alignment, red zones etc.) exceeds maximum supported size of 0x10000000000 (thread T0)\n"
            "    #0 0x4a in malloc\n    #1 0x4b in famfs_read_log /src/famfs_lib.c:300:10\n\n"
            "SUMMARY: AddressSanitizer: allocation-size-too-big /src/famfs_lib.c:300:10 in famfs_read_log\n")
    r = parse_sanitizer(text)
    assert r.bug == "allocation-size-too-big" and r.frames[0] == "famfs_lib.c:famfs_read_log"


def test_the_whole_bounded_report_is_kept_with_its_access_stack():
    filler = "".join(f"    #{k} 0x{k:x} in alloc_frame_{k} /src/a.c:{k}\n" for k in range(3, 200))
    text = ("noise before\n==5==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x1\n"
            "READ of size 4 at 0x1 thread T0\n    #0 0x1 in famfs_validate_log_entry /src/famfs_lib.c:50\n\n"
            "allocated by thread T0 here:\n" + filler + "Shadow bytes around the buggy address:\n" + "x" * 3000
            + "\nSUMMARY: AddressSanitizer: heap-buffer-overflow\n")
    kept = report_text(text)
    assert len(text) > 2000 and kept.startswith("==5==ERROR") and "famfs_validate_log_entry" in kept
    assert "READ of size 4" in kept and "SUMMARY: AddressSanitizer" in kept and "noise before" not in kept
    huge = report_text(text + "y" * (3 * REPORT_LIMIT))
    assert len(huge) < REPORT_LIMIT + 200 and "famfs_validate_log_entry" in huge and "characters cut" in huge


def test_crash_keys_corpus_and_tag_depend_on_the_program(tmp_path):
    a, b = program_tag("/bin/true fsck {image}"), program_tag("/bin/true logplay {image}")
    c = program_tag("/bin/false fsck {image}")
    assert len({a, b, c}) == 3 and a.startswith("true-") and c.startswith("false-")
    assert program_tag("/bin/true fsck {image}") == a
    assert program_corpus("/bin/true fsck {image}") != program_corpus("/bin/true logplay {image}")
    s1 = classify(-11, "", False, "external", a)
    s2 = classify(-11, "", False, "external", b)
    assert s1.what == s2.what == "SIGSEGV" and s1.key != s2.key and a in s1.title
    assert External("/bin/true fsck {image}").tag == a
    # seeds are found from any working directory: an empty corpus gets gen.seeds' inputs
    corpus = tmp_path / "elsewhere" / "corpus"
    assert seed_corpus(corpus) == len(list(seeds.external_inputs())) > 0
    assert seed_corpus(corpus) == 0                                        # never twice


def test_batch_mode_passes_the_commands_arguments(tmp_path):
    assert batch_argv("prog fsck {image} heap") == ["prog", "--batch", "fsck", "heap"]
    assert batch_argv("prog --dev={image0} {images} -v") == ["prog", "--batch", "-v"]
    wrapper = python_program(tmp_path, "argcheck", "import sys\nok = sys.argv[1:] == ['--batch', 'fsck', 'heap']\n"
                             "for _ in sys.stdin:\n    print('ok' if ok else 'reject', flush=True)\n")
    e = External(f"{wrapper} fsck {{image}} heap", batch=True, timeout=20)
    try:
        assert [e.run([b"x"]).accepted for _ in range(2)] == [True, True]
    finally:
        e.close()


def _prog(tmp_path: Path, body: str) -> str:
    p = tmp_path / "prog.py"
    p.write_text(body)
    return f"{sys.executable} {p} {{image}}"


def test_differential_names_our_invariant_and_flags_escapes_whatever_the_verdict(tmp_path):
    good = bytes(log_image(SEEDS[1]).device)
    broken_sb = bytearray(good)
    broken_sb[0] ^= 1                                                      # superblock magic
    broken_log = bytearray(good)
    broken_log[2 << 20] ^= 1                                               # log header magic
    accept = ExternalOutcome(True)
    f1 = differential(accept, bytes(broken_sb), len(good), "p")
    f2 = differential(accept, bytes(broken_log), len(good), "p")
    assert f1.signature.what.startswith("ours-reject(SB-") and f2.signature.what.startswith("ours-reject(")
    assert f1.signature.key != f2.signature.key                            # two disagreements, two folders
    escaping = ExternalOutcome(False, files=["a", "../etc"])               # the program refused, yet...
    f3 = differential(escaping, good, len(good), "p")
    assert (f3.signature.kind, f3.signature.what) == ("invariant", "NS-CONTAINED")
    assert differential(ExternalOutcome(True, files=["/abs"]), good, len(good)).signature.what == "NS-CONTAINED"


def test_differential_through_the_case_runner_flags_a_dotdot_from_a_refusing_program(tmp_path, monkeypatch):
    cmd = _prog(tmp_path, "import sys\nprint('file ok')\nprint('file a/../../b')\nsys.exit(1)\n")
    monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_CMD", cmd)
    monkeypatch.setenv("FAMFS_FUZZ_DIFFERENTIAL", "1")
    with pytest.raises(ExternalFinding) as f:
        external_case(b"\x00" + SEEDS[1])
    assert f.value.signature.what == "NS-CONTAINED" and f.value.signature.site == program_tag(cmd)


def test_images_are_written_sparse_and_read_back_the_same(tmp_path):
    device = bytes(log_image(SEEDS[0]).device)                             # ~2 MiB, a few KiB used
    path = tmp_path / "img"
    write_sparse(str(path), device)
    st = path.stat()
    assert path.read_bytes() == device and st.st_size == len(device) == 2162688
    assert st.st_blocks * 512 <= 256 * 1024, f"{st.st_blocks * 512} bytes allocated for {len(device)}"
    e = External("/bin/true {image}")
    (p,) = e.write([device])
    assert os.stat(p).st_blocks * 512 <= 256 * 1024
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        assert p.startswith("/dev/shm/")


def test_raw_bytes_no_superblock_places_are_still_given_to_the_program(tmp_path, monkeypatch):
    seen = tmp_path / "seen"
    monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_CMD",
                       _prog(tmp_path, f"import sys, shutil\nshutil.copy(sys.argv[1], {str(seen)!r})\nsys.exit(1)\n"))
    external_case(b"\x00" + b"\x07" * 300)                                 # log_offset 0x0707...: no log
    assert seen.read_bytes() == b"\x07" * 300


def test_crash_folders_keep_the_first_samples_and_more_recent_ones(tmp_path):
    store = CrashStore(tmp_path)
    sig = Signature.of("sanitizer", "x")
    store.save("external", sig, b"input")
    for k in range(60):
        store.save("external", sig, b"sample %d" % k)
    names = os.listdir(tmp_path / "external" / sig.key / "samples")
    data = {(tmp_path / "external" / sig.key / "samples" / n).read_bytes() for n in names}
    assert len(names) == crashstore.SAMPLES_FIRST + crashstore.SAMPLES
    assert {b"sample %d" % k for k in range(crashstore.SAMPLES_FIRST)} <= data          # the first evidence
    assert b"sample 59" in data and b"sample 20" not in data


def test_afl_command_maps_the_primary_and_refuses_several_devices():
    assert afl_argv("prog fsck {image} heap") == ["prog", "fsck", "@@", "heap"]
    assert afl_argv("prog --dev={image0}") == ["prog", "--dev=@@"]
    for bad in ("prog {images}", "prog {image0} {image1}", "prog fsck", "prog {image} {image}"):
        with pytest.raises(HarnessError):
            afl_argv(bad)


def test_afl_queue_becomes_the_programs_corpus(tmp_path):
    q = tmp_path / "queue"
    q.mkdir()
    (q / "id:000000,time:0,orig:x").write_bytes(SEEDS[0])
    (q / "README.txt").write_text("not an input")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    assert import_queue(q, corpus) == 1 and import_queue(q, corpus) == 0
    (entry,) = corpus.iterdir()
    assert entry.read_bytes() == b"\x00" + SEEDS[0]


def test_the_afl_mutator_runs_under_the_system_python_with_the_standard_library_only():
    """afl-fuzz embeds the system Python 3.11 without our virtualenv: the module must import and
    mutate with the standard library only (site disabled: no site-packages at all)."""
    py = "/usr/bin/python3"
    if not os.path.exists(py):
        pytest.skip("no system python3")
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import harness.gen.afl_mutator as m
from harness.famfs import layout as L
mods = [n for n in sys.modules if n.split('.')[0] not in sys.stdlib_module_names and not n.startswith('_')]
bad = [n for n in mods if not (n == 'harness' or n.startswith(('harness.gen', 'harness.famfs')))]
assert not bad, bad
m.init(7)
seed = open(sys.argv[1], 'rb').read()
assert m.fuzz_count(bytearray(seed)) > 0
changed = 0
for k in range(200):
    out = m.fuzz(bytearray(seed), bytearray(seed), 1 << 20)
    assert isinstance(out, bytearray) and 0 < len(out) <= 1 << 20
    changed += out != seed
    assert isinstance(m.describe(40), str)
assert changed > 150, changed
assert m.post_process(bytearray(seed)) == seed                 # AFL's queue keeps the compact image
import os
dev = open(os.environ['FAMFS_AFL_DEVICE'], 'rb').read()     # ... the program reads the device
sb = L.Superblock.decode(dev)
assert len(dev) == sb.log_offset + sb.log_len and dev[sb.log_offset:sb.log_offset + 48] == seed[200:248]
assert dev == m.expand(seed) and os.stat(os.environ['FAMFS_AFL_DEVICE']).st_blocks * 512 < 256 * 1024
crashes = os.environ['FAMFS_AFL_CRASHES']                   # a sanitizer report after an execution:
open(os.path.join(crashes, '.reports', 'asan.1'), 'w').write('==1==ERROR: AddressSanitizer: heap-buffer-overflow\\n'
     '    #0 0x55 in f (/bin/prog+0x1234)\\n')
m.fuzz(bytearray(seed), None, 1 << 20)                      # ... the input that caused it is kept
kept = [n for n in os.listdir(crashes) if not n.startswith('.')]
assert len(kept) == 1 and open(os.path.join(crashes, kept[0]), 'rb').read() == seed and 'execs:' in kept[0], kept
print('ok')
"""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        img = Path(d) / "seed.img"
        img.write_bytes(SEEDS[3])
        (Path(d) / "crashes" / ".reports").mkdir(parents=True)
        r = subprocess.run([py, "-S", "-c", code, str(img)], capture_output=True, text=True, timeout=120,
                           env={"PATH": os.environ.get("PATH", "/usr/bin"), "FAMFS_AFL_DEVICE": str(Path(d) / "dev"),
                                "FAMFS_AFL_CRASHES": str(Path(d) / "crashes")})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_the_cli_refuses_afl_lane_misuse_with_a_harness_error(capsys):
    import json

    from harness.cli import main
    for argv in (["fuzz", "log_replay", "--engine", "afl", "--json"],
                 ["fuzz", "external", "--engine", "afl", "--cmd", "/bin/true {image}", "--differential", "--json"],
                 ["fuzz", "external", "--engine", "afl", "--cmd", "/bin/true {images}", "--json"]):
        assert main(argv) == 2, argv
        assert json.loads(capsys.readouterr().out)["error"]["id"] == "HARNESS"
