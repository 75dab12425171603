"""The host-side checks of the real-DAX lanes fail when they should (no guest needed): a guest's
result is made here the way a guest makes it (`realdax.agent.observation` over an in-process
daemon on the lane's workload, its probe log written by the daemon), then judged by the lanes'
host side (`check_guest`: the oracle's `check_listing` / `check_files`): a clean result passes;
wrong bytes, a failed read, a missing file, a device in the wrong place, a lookup of the wrong
device, an internal error and no lookups at all are findings. Then the set-up helpers (module
closure, kernel extraction) on small inputs."""
from __future__ import annotations

import copy
import lzma
import uuid

import pytest

from harness.tools.probelog import JsonlProbe, load
from harness.realdax.kit import RealdaxError, extract_vmlinux, module_closure
from harness.realdax.agent import observation
from harness.realdax.lanes import STAGE1, STAGE2, check_guest, lookups_checked, mkfs_ops
from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.ids import uuid_str
from harness.gen.decode import encode_image, head_end
from harness.oracle.case import daemon_reader
from harness.oracle.lookups import LookupChecker
from harness.oracle.model import verdict

U = [uuid.UUID(int=0xA0 + i).bytes for i in range(2)]
SIZES = [64 << 20, 64 << 20]
OPS = STAGE1 + STAGE2
STAGES = {"after": OPS}


@pytest.fixture(scope="module")
def bufs() -> list[bytearray]:
    devices = [bytearray(n) for n in SIZES]
    mkfs_ops(devices, SIZES, U, uuid.UUID(int=0xF5).bytes, OPS)
    return devices


def _walk(primary: bytearray) -> dict:
    """The listing a correct mount shows (what the guest's walk records)."""
    out = {}
    for path, d in verdict(bytes(primary[:head_end(primary)]), len(primary)).namespace:
        out[path] = ({"type": "d", "mode": d[1], "uid": d[2], "gid": d[3]} if d[0] == "d" else
                     {"type": "f", "size": d[1], "mode": d[2], "uid": d[3], "gid": d[4]})
    return out


def _doc(bufs: list[bytearray], tmp_path, node: str = "A", order: tuple[int, int] = (0, 1)) -> dict:
    """A guest's result for `node` seeing backing file order[k] as dax{k}.0, made as a guest does."""
    devs = [DaxDevice.in_memory(bufs[i], f"dax{k}.0", node=node) for k, i in enumerate(order)]
    host = Resolver(node, devs)
    log = tmp_path / f"probe-{node}.jsonl"
    probe = JsonlProbe(str(log))
    daemon = Daemon.mount(host, probe=probe, primary=host.primary())
    primary = bufs[0]
    obs = observation(encode_image(primary), len(primary), _walk(primary), daemon_reader(daemon),
                      lambda: load(str(log)))
    probe.close()
    return {"ok": True, "names": {n: uuid_str(u) for n, u in host.uuids().items()},
            "sizes": {f"dax{k}.0": SIZES[i] for k, i in enumerate(order)},
            "primary": f"dax{order.index(0)}.0", "stages": {"after": obs}}


def _judge(bufs: list[bytearray], *docs: tuple[str, dict, tuple[int, int]]) -> tuple[list[str], int, int, int]:
    checker = LookupChecker(site="realdax/pull-devt")
    problems: list[str] = []
    nfiles = nbytes = 0
    for node, doc, order in docs:
        p, f, b = check_guest(node, doc, order, U, SIZES, bufs, checker, STAGES)
        problems, nfiles, nbytes = problems + p, nfiles + f, nbytes + b
    return problems, nfiles, nbytes, lookups_checked(checker, problems)


def test_a_clean_guest_result_passes(bufs, tmp_path) -> None:
    problems, files, nbytes, lookups = _judge(bufs, ("A", _doc(bufs, tmp_path), (0, 1)),
                                              ("B", _doc(bufs, tmp_path, "B", (1, 0)), (1, 0)))
    assert problems == []
    assert files == 2 * 5 and nbytes == 2 * sum(op.size for op in OPS if hasattr(op, "size"))
    assert lookups > 2                              # index 0 and 1 on both nodes


def test_wrong_bytes_a_failed_read_and_a_missing_file_are_findings(bufs, tmp_path) -> None:
    clean = _doc(bufs, tmp_path)
    reads = clean["stages"]["after"]["reads"]
    wrong = copy.deepcopy(clean)
    k = next(i for i, r in enumerate(reads) if r[0] == "dirA/f2")
    wrong["stages"]["after"]["reads"][k][3] = "0" * 64
    assert any(p.startswith("DATA: node A, after: 'dirA/f2'") and "SHA-256 differs" in p
               for p in _judge(bufs, ("A", wrong, (0, 1)))[0])
    failed = copy.deepcopy(clean)
    k = next(i for i, r in enumerate(reads) if r[0] == "dirA/striped")
    failed["stages"]["after"]["reads"][k][3:] = [None, 5]
    assert any(p.startswith("DATA: node A, after: 'dirA/striped'") and "device is present" in p
               for p in _judge(bufs, ("A", failed, (0, 1)))[0])
    missing = copy.deepcopy(clean)
    del missing["stages"]["after"]["walk"]["f1"]
    assert any(p.startswith("NS-CONFLICT: node A, after") and "'f1' is in the log but not listed" in p
               for p in _judge(bufs, ("A", missing, (0, 1)))[0])
    mode = copy.deepcopy(clean)
    mode["stages"]["after"]["walk"]["dirA/sub"]["mode"] = 0o777
    assert any("NS-CONFLICT" in p and "mode" in p for p in _judge(bufs, ("A", mode, (0, 1)))[0])


def test_a_device_in_the_wrong_place_is_reported(bufs, tmp_path) -> None:
    doc = _doc(bufs, tmp_path, order=(1, 0))       # the guest's dax0.0 is the second backing file
    problems = _judge(bufs, ("A", doc, (0, 1)))[0]
    assert any("device order" in p for p in problems)


def test_a_lookup_of_the_wrong_device_and_an_internal_error_are_findings(bufs, tmp_path) -> None:
    doc = _doc(bufs, tmp_path, "B", (1, 0))
    events = doc["stages"]["after"]["events"]
    k = next(i for i, e in enumerate(events) if e["ev"] == "lookup" and e["index"] == 1 and not e["errno"])
    events[k]["name"] = "dax1.0"                    # on B, dax1.0 carries index 0's UUID
    problems = _judge(bufs, ("B", doc, (1, 0)))[0]
    assert problems and problems[0].startswith("IDX-LOOKUP: node B, after")
    doc = _doc(bufs, tmp_path)
    doc["stages"]["after"]["events"].append({"ev": "internal_error", "where": "read", "type": "KeyError",
                                             "error": "7", "traceback": "Traceback ...\nKeyError: 7\n"})
    problems = _judge(bufs, ("A", doc, (0, 1)))[0]
    assert problems and problems[0].startswith("INTERNAL-ERROR: node A, after") and "KeyError: 7" in problems[0]


def test_no_lookups_is_a_finding(bufs, tmp_path) -> None:
    doc = _doc(bufs, tmp_path)
    doc["stages"]["after"]["events"] = []
    problems, _, _, lookups = _judge(bufs, ("A", doc, (0, 1)))
    assert lookups == 0 and any("nothing was checked" in p for p in problems)


def test_a_log_without_the_lanes_workload_is_a_harness_problem(bufs, tmp_path) -> None:
    doc = _doc(bufs, tmp_path)
    checker = LookupChecker()
    problems, _, _ = check_guest("A", doc, (0, 1), U, SIZES, bufs, checker, {"after": STAGE1})
    assert any(p.startswith("HARNESS: node A, after: the log holds") for p in problems)
    assert uuid_str(U[0]) in doc["names"].values()


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
    from harness.ops.nightly import recheck
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
    from harness.realdax.fuzz import case_inputs
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "seed1").write_bytes(b"\x05" * 40)
    a = case_inputs("t", count=30, seed=7, corpora=tmp_path, max_len=64)
    assert a == case_inputs("t", count=30, seed=7, corpora=tmp_path, max_len=64)
    assert a[0] == b"\x05" * 40 and len(a) == 31 and all(1 <= len(x) <= 64 for x in a)
    assert a != case_inputs("t", count=30, seed=8, corpora=tmp_path, max_len=64)


def test_nightly_says_why_the_real_lane_skips_where_it_cannot_run(tmp_path, monkeypatch) -> None:
    """Where the lane cannot be installed, `nightly --dax-real` records the reason and goes on;
    the fuzz verb itself refuses with a typed error (exit 2 at the CLI)."""
    from harness.ops import nightly as nightly_mod
    from harness.realdax import kit
    from harness.realdax.fuzz import fuzz_real
    from harness.engine.slots import Scheduled
    monkeypatch.setattr(kit, "missing_tools", lambda: ["qemu-system-x86"])
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

    from harness.realdax import kit
    monkeypatch.setattr(sys, "prefix", "/opt/venv")
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python")
    monkeypatch.setattr(kit, "REPO", Path("/srv/famfs-fuzz"))
    assert kit.kept_tmp_dirs() == []
    monkeypatch.setattr(kit, "REPO", Path("/tmp/ci-clone/famfs-fuzz"))
    monkeypatch.setattr(sys, "prefix", "/tmp/venvs/py311")
    assert kit.kept_tmp_dirs() == ["ci-clone", "venvs"]
    monkeypatch.setattr(kit, "REPO", Path("/tmp/rd"))
    with pytest.raises(kit.RealdaxError):
        kit.kept_tmp_dirs()
