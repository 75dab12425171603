"""The host-side checks of the real-DAX lane fail when they should (no guest needed): wrong bytes,
a missing file, a device in the wrong place, a lookup of the wrong device, two nodes that
disagree; and the set-up helpers (module closure, kernel extraction) on small inputs."""
from __future__ import annotations

import copy
import lzma
import uuid

import pytest

from harness.engine.realdax import RealdaxError, extract_vmlinux, module_closure
from harness.engine.realdax_lanes import (
    STAGE1, _check_guest, _check_lookups, compare_namespace, expected_namespace,
)
from harness.famfs.ids import uuid_str
from harness.oracle.lookups import LookupChecker

U = [uuid.UUID(int=0xA0 + i).bytes for i in range(2)]
SIZES = [64 << 20, 64 << 20]


def _doc(node: str = "A", order: tuple[int, int] = (0, 1)) -> dict:
    names = {f"dax{k}.0": uuid_str(U[i]) for k, i in enumerate(order)}
    return {"ok": True, "names": names, "sizes": {f"dax{k}.0": SIZES[i] for k, i in enumerate(order)},
            "after": copy.deepcopy(expected_namespace(STAGE1)),
            "lookups": [{"node": node, "index": i, "name": f"dax{order.index(i)}.0", "devno": 1, "errno": 0}
                        for i in (0, 1)]}


def _checker() -> LookupChecker:
    return LookupChecker(expected={0: U[0], 1: U[1]})


def test_a_clean_guest_result_passes() -> None:
    checker = _checker()
    problems, files, nbytes = _check_guest("A", _doc(), [0, 1], U, SIZES, expected_namespace(STAGE1), checker)
    assert problems == [] and files == 3 and nbytes == 4096 + (5 << 20) + (16 << 20)
    assert _check_lookups(checker, problems) == 2 and problems == []


def test_wrong_bytes_and_missing_files_are_findings() -> None:
    want = expected_namespace(STAGE1)
    seen = copy.deepcopy(want)
    seen["dirA/f2"]["sha256"] = "0" * 64
    del seen["f1"]
    seen["dirA/striped"] = {"type": "f", "errno": 5}
    problems = compare_namespace("B", seen, want)
    assert any(p.startswith("DATA: node B: 'dirA/f2'") for p in problems)
    assert any(p.startswith("NS-CONFLICT: node B: 'f1' missing") for p in problems)
    assert any(p.startswith("DATA: node B: 'dirA/striped': read failed, errno 5") for p in problems)


def test_a_device_in_the_wrong_place_is_reported() -> None:
    doc = _doc(order=(1, 0))                        # the guest's dax0.0 is the second backing file
    problems, _, _ = _check_guest("A", doc, [0, 1], U, SIZES, expected_namespace(STAGE1), _checker())
    assert any("device order" in p for p in problems)


def test_a_lookup_of_the_wrong_device_and_a_split_cluster_are_findings() -> None:
    checker = _checker()
    doc = _doc()
    doc["lookups"][1]["name"] = "dax0.0"            # index 1 answered with the primary
    _check_guest("A", doc, [0, 1], U, SIZES, expected_namespace(STAGE1), checker)
    problems: list[str] = []
    _check_lookups(checker, problems)
    assert problems and problems[0].startswith("IDX-LOOKUP")

    checker = LookupChecker(expected={0: U[0]})     # index 1 unknown to the model
    a, b = _doc("A", (0, 1)), _doc("B", (1, 0))
    b["lookups"][1]["name"] = "dax1.0"              # on B, dax1.0 is U[0]: index 1 -> U[0] there
    for node, doc, order in (("A", a, [0, 1]), ("B", b, [1, 0])):
        _check_guest(node, doc, order, U, SIZES, expected_namespace(STAGE1), checker)
    problems = []
    _check_lookups(checker, problems)               # an index the model does not know never passes
    assert problems and problems[0].startswith("IDX-LOOKUP") and "does not define" in problems[0]


def test_no_lookups_is_a_finding() -> None:
    problems: list[str] = []
    assert _check_lookups(_checker(), problems) == 0
    assert problems and "nothing was checked" in problems[0]


def test_module_closure_puts_dependencies_first() -> None:
    dep = ("kernel/a/fuse.ko:\nkernel/b/9p.ko: kernel/c/9pnet.ko kernel/d/netfs.ko\n"
           "kernel/c/9pnet.ko:\nkernel/d/netfs.ko: kernel/c/9pnet.ko\n")
    assert module_closure(dep, ["9p", "fuse"]) == ["kernel/c/9pnet.ko", "kernel/d/netfs.ko",
                                                   "kernel/b/9p.ko", "kernel/a/fuse.ko"]
    with pytest.raises(RealdaxError):
        module_closure(dep, ["nfit"])


def test_extract_vmlinux_finds_the_elf_inside() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 8
    bz = b"MZ" + b"\0" * 500 + b"\xfd7zXZ\x00junk" + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"\0" * 64
    assert extract_vmlinux(bz) == elf
    with pytest.raises(RealdaxError):
        extract_vmlinux(b"MZ" + b"\0" * 100)


def test_nightly_recheck_leaves_real_dax_findings_alone(tmp_path) -> None:
    """A finding of the real lane is not 'fixed' because the emulated repro passes: it stays."""
    from harness.engine.crashstore import CrashStore
    from harness.engine.nightly import recheck
    from harness.engine.signature import Signature
    store = CrashStore(tmp_path / "crashers")
    sig = Signature.of("invariant", "DATA", ["devices.py:read"])
    store.save("mount_e2e", sig, b"\x01\x02", mode="real-dax",
               repro_cmd="famfs-fuzz fuzz mount_e2e --dax real --input x/input")
    out = recheck(store, tmp_path / "corpora", lambda line: None)
    assert [e["status"] for e in out] == ["real-dax"]
    assert (tmp_path / "crashers" / "mount_e2e" / sig.key / "crash.json").exists()
    assert not (tmp_path / "corpora").exists()


def test_case_inputs_are_deterministic_and_bounded(tmp_path) -> None:
    from harness.engine.realdax_fuzz import case_inputs
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "seed1").write_bytes(b"\x05" * 40)
    a = case_inputs("t", count=30, seed=7, corpora=tmp_path, max_len=64)
    assert a == case_inputs("t", count=30, seed=7, corpora=tmp_path, max_len=64)
    assert a[0] == b"\x05" * 40 and len(a) == 31 and all(1 <= len(x) <= 64 for x in a)
    assert a != case_inputs("t", count=30, seed=8, corpora=tmp_path, max_len=64)


def test_nightly_says_why_the_real_lane_skips_where_it_cannot_run(tmp_path, monkeypatch) -> None:
    """Where the lane cannot be installed, `nightly --dax-real` records the reason and goes on;
    the fuzz verb itself refuses with a typed error (exit 2 at the CLI)."""
    from harness.engine import nightly as nightly_mod
    from harness.engine import realdax
    from harness.engine.realdax_fuzz import fuzz_real
    from harness.engine.slots import Scheduled
    monkeypatch.setattr(realdax, "missing_tools", lambda: ["qemu-system-x86"])
    with pytest.raises(RealdaxError) as e:
        fuzz_real("mount_e2e")
    assert e.value.skip_reason and "qemu-system-x86" in e.value.skip_reason
    monkeypatch.setattr(nightly_mod, "run_shares", lambda *a, **kw: Scheduled())
    monkeypatch.setattr(nightly_mod, "merge", lambda *a, **kw: 0)
    monkeypatch.setattr(nightly_mod, "famfs_coverage", lambda *a, **kw: {})
    lines: list[str] = []
    r = nightly_mod.nightly(tmp_path / "n", budget=1, targets=["superblock"], crashers=tmp_path / "c",
                            corpora=tmp_path / "corpora", progress=lines.append, real_dax=30)
    assert r.skipped and "qemu-system-x86" in r.skipped[0]
    assert any("real-DAX lane skipped" in line for line in lines)


def test_a_tree_under_the_hosts_tmp_is_kept_visible_in_the_guest(monkeypatch) -> None:
    """The guest mounts a tmpfs over /tmp; a checkout (or venv) under the host's /tmp is bound back
    by its top-level directory name, and one the guest cannot keep is refused with the reason."""
    import sys
    from pathlib import Path

    from harness.engine import realdax
    monkeypatch.setattr(sys, "prefix", "/opt/venv")
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python")
    monkeypatch.setattr(realdax, "REPO", Path("/srv/famfs-fuzz"))
    assert realdax.kept_tmp_dirs() == []
    monkeypatch.setattr(realdax, "REPO", Path("/tmp/ci-clone/famfs-fuzz"))
    monkeypatch.setattr(sys, "prefix", "/tmp/venvs/py311")
    assert realdax.kept_tmp_dirs() == ["ci-clone", "venvs"]
    monkeypatch.setattr(realdax, "REPO", Path("/tmp/rd"))
    with pytest.raises(realdax.RealdaxError):
        realdax.kept_tmp_dirs()
