"""The real-DAX lanes of `scripts/realdax-vm`: `smoke` (one guest, two NVDIMMs, a golden-shaped
famfs written by the host, mounted and read through the daemon's FUSE mount on /dev/dax0.0 +
/dev/dax1.0) and `two_nodes` (a master and a client guest on one memory, in opposite device
order). The guests report what they saw (`realdax_guest`); every check is made here, on the host:
device order and sizes, the namespace, each file's bytes, and every lookup of every node in one
`LookupChecker` (IDX-LOOKUP per node, IDX-CLUSTER across them).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.engine.realdax import (
    DEV_FILE_SIZE, MiB, Guest, GuestRun, Kit, RealdaxError, Say, backing_file, dax_size, guest_result,
    guest_script, map_device, quiet, run_dir, setup, show_path,
)
from harness.famfs.image import Buffer, Image, Interleave, pattern
from harness.famfs.ids import Uuid, parse_uuid, uuid_str
from harness.gen.spec import AddDaxdev, Create, Mkdir, Op
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import LookupChecker


# -- the workload: a golden-shaped famfs over two devices -------------------------------------------

# Stage 1 is the golden image's namespace (tests/golden/famfs-5d0919f: two dirs, a 4 KiB file, a
# 5 MiB file, a 16 MiB file in 4 strips of 2 MiB chunks) on the primary. Stage 2 is what a master
# adds later: ADD_DAXDEV of the second device (index 1), a file on index 1 and one interleaved
# across both devices, so the daemon on a real devdax resolves index 1 through GET_DAXDEV.
STAGE1: tuple[Op, ...] = (
    Mkdir("dirA", 0o755, 0, 0), Mkdir("dirA/sub", 0o700, 1000, 1000),
    Create("f1", 4096, 0o644), Create("dirA/f2", 5 * MiB, 0o600, 1000, 1000),
    Create("dirA/striped", 16 * MiB, 0o644, strips=(0, 0, 0, 0)),
)
STAGE2: tuple[Op, ...] = (
    AddDaxdev(1), Create("dirA/sub/on1", 3 * MiB + 17, 0o640, 1000, 1000, devindex=1),
    Create("cross", 8 * MiB + 5, 0o644, strips=(0, 1, 0, 1)),
)


def apply_ops(image: Image, ops: Sequence[Op], devices: Sequence[Buffer], sizes: Sequence[int],
              uuids: Sequence[Uuid]) -> None:
    """Perform `ops` as the master (the project's appender: `Image`); AddDaxdev(k) attaches
    devices[k]. File contents are `image.pattern(path, size)`."""
    for op in ops:
        if isinstance(op, Mkdir):
            image.mkdir(op.path, op.mode, op.uid, op.gid)
        elif isinstance(op, AddDaxdev):
            image.attach(devices[op.device], sizes[op.device], uuids[op.device])
        elif op.strips:
            image.create(op.path, op.size, mode=op.mode, uid=op.uid, gid=op.gid,
                         interleave=Interleave(len(op.strips), op.chunk, op.strips))
        else:
            image.create(op.path, op.size, mode=op.mode, uid=op.uid, gid=op.gid, devindex=op.devindex)


def mkfs_ops(devices: Sequence[Buffer], sizes: Sequence[int], uuids: Sequence[Uuid], fs_uuid: Uuid,
             ops: Sequence[Op]) -> Image:
    """mkfs (primary devices[0], the others as secondaries, not yet added), then `ops`."""
    image = Image.mkfs(devices, sizes, uuids=uuids, fs_uuid=fs_uuid, system_uuid=fs_uuid,
                       add_secondaries=False)
    apply_ops(image, ops, devices, sizes, uuids)
    return image


def expected_namespace(ops: Sequence[Op]) -> dict[str, dict]:
    """What a mount of the famfs after `ops` must show: path -> type, size, mode, uid, gid, sha256."""
    out: dict[str, dict] = {}
    for op in ops:
        if isinstance(op, Mkdir):
            out[op.path] = {"type": "d", "mode": op.mode, "uid": op.uid, "gid": op.gid}
        elif isinstance(op, Create):
            out[op.path] = {"type": "f", "size": op.size, "mode": op.mode, "uid": op.uid, "gid": op.gid,
                            "sha256": hashlib.sha256(pattern(op.path, op.size)).hexdigest()}
    return out


def compare_namespace(node: str, seen: dict[str, dict], want: dict[str, dict]) -> list[str]:
    """Differences between a mount's walk (`seen`, from the guest) and `want`, as invariant-tagged lines."""
    problems = []
    for path in sorted(set(seen) | set(want)):
        s, w = seen.get(path), want.get(path)
        if s is None or w is None:
            problems.append(f"NS-CONFLICT: node {node}: {path!r} " + ("missing from the mount" if s is None
                                                                       else "served but not in the log"))
            continue
        if "errno" in s:
            problems.append(f"DATA: node {node}: {path!r}: read failed, errno {s['errno']} ({os.strerror(s['errno'])})")
            continue
        for key in ("type", "size", "mode", "uid", "gid"):
            if key in w and s.get(key) != w[key]:
                problems.append(f"NS-CONFLICT: node {node}: {path!r}: {key} {s.get(key)!r}, the log has {w[key]!r}")
        if "sha256" in w and s.get("sha256") != w["sha256"]:
            problems.append(f"DATA: node {node}: {path!r}: bytes read through the mount differ from what was written")
    return problems


# -- lanes -----------------------------------------------------------------------------------------------


@dataclass
class LaneResult:
    """The outcome of `smoke` or `two_nodes`: problems (empty = pass), counts and wall times."""

    lane: str
    problems: list[str]
    files_checked: int = 0
    bytes_checked: int = 0
    lookups_checked: int = 0
    boot_to_result_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    guests: dict[str, dict] = field(default_factory=dict)
    run_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"lane": self.lane, "ok": self.ok, "problems": self.problems, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "lookups_checked": self.lookups_checked,
                "boot_to_result_s": self.boot_to_result_s, "wall_s": round(self.wall_s, 2),
                "guests": self.guests, "run_dir": self.run_dir}


def _check_guest(node: str, doc: dict, order: Sequence[int], uuids: Sequence[Uuid], sizes: Sequence[int],
                 want: dict[str, dict], checker: LookupChecker, key: str = "after") -> tuple[list[str], int, int]:
    """One guest's result against the expectation: device order and sizes, namespace, bytes; its
    lookups go into `checker` (checked by the caller, across nodes). Returns problems, files, bytes."""
    if not doc.get("ok"):
        return [f"HARNESS: node {node}: guest failed: {doc.get('error')}"], 0, 0
    problems = []
    names = {name: parse_uuid(text) for name, text in doc["names"].items()}   # local name -> UUID, from the guest
    for k, i in enumerate(order):
        local = f"dax{k}.0"
        if names.get(local) != uuids[i]:
            problems.append(f"HARNESS: node {node}: {local} carries {doc['names'].get(local)}, expected backing "
                            f"file {i} ({uuid_str(uuids[i])}): the guest's device order is not the NVDIMM order")
        if doc["sizes"].get(local) != sizes[i]:
            problems.append(f"HARNESS: node {node}: {local} is {doc['sizes'].get(local)} bytes, the host "
                            f"mapped {sizes[i]} (DATA_OFFSET layout)")
    checker.names[node] = names
    seen = doc[key]
    problems += compare_namespace(node, seen, want)
    for e in doc.get("lookups", []):
        checker.lookup(e["node"], e["index"], e["name"], e["devno"], e["errno"])
    files = [p for p, w in want.items() if w["type"] == "f"]
    return problems, len(files), sum(want[p]["size"] for p in files)


def smoke(kit: Kit, say: Say = quiet, keep: bool = False, timeout: float = 150.0) -> LaneResult:
    """One guest, two NVDIMMs. The host writes the golden-shaped famfs (both stages) into the
    backing files; the guest mounts the daemon on /dev/dax0.0 + /dev/dax1.0 through FUSE and reads
    every file; the host checks namespace, bytes and every lookup."""
    t0 = time.monotonic()
    work = run_dir("smoke")
    paths = [backing_file(work / f"nvdimm{i}.img", DEV_FILE_SIZE, kit, say) for i in range(2)]
    maps = [map_device(p) for p in paths]
    sizes = [len(m) for m in maps]
    uuids = [Uuid(uuidlib.uuid4().bytes) for _ in paths]
    try:
        views = [memoryview(m) for m in maps]
        mkfs_ops(views, sizes, uuids, Uuid(uuidlib.uuid4().bytes), STAGE1 + STAGE2)
        del views                           # the image's views go before the mappings close
    finally:
        for m in maps:
            m.close()
    ops = STAGE1 + STAGE2
    want = expected_namespace(ops)
    (work / "manifest.json").write_text(json.dumps({"node": "A", "ndev": 2}))
    say(f"realdax: smoke: booting one guest on 2 NVDIMMs ({show_path(work)})")
    guest = Guest(kit, "A", paths, work, guest_script("mount", "--result", "/tmp/rd/result-A.json",
                                                       "--manifest", "/tmp/rd/manifest.json"), timeout=timeout)
    run, t_result = guest.run_until(work / "result-A.json")
    doc = guest_result(work / "result-A.json", run)
    checker = LookupChecker(expected={0: uuids[0], 1: uuids[1]})
    problems, nfiles, nbytes = _check_guest("A", doc, [0, 1], uuids, sizes, want, checker)
    lookups = _check_lookups(checker, problems)
    result = LaneResult("smoke", problems, nfiles, nbytes, lookups, {"A": round(t_result, 2)},
                        time.monotonic() - t0, {"A": _summary(doc, run)}, show_path(work))
    _finish(work, result, keep)
    return result


def _check_lookups(checker: LookupChecker, problems: list[str]) -> int:
    n = len(checker.lookups)
    try:
        checker.check()
    except InvariantViolation as v:
        problems.append(f"{v.invariant.value}: {v}")
    if n == 0:
        problems.append("IDX-LOOKUP: no lookup events came back from the guest daemon (nothing was checked)")
    return n


def _summary(doc: dict, run: GuestRun) -> dict:
    """What a guest saw, for the report: timings, each file's SHA-256 after the last replay, and
    which local device answered each index (e.g. index 1 is dax1.0 on A, dax0.0 on B)."""
    by_index: dict[str, dict[str, int]] = {}
    for e in doc.get("lookups", []):
        if not e["errno"]:
            names = by_index.setdefault(str(e["index"]), {})
            names[e["name"]] = names.get(e["name"], 0) + 1
    files = {p: d.get("sha256", d.get("errno")) for p, d in doc.get("after", {}).items() if d.get("type") == "f"}
    return {"uptime_at_result_s": doc.get("uptime"), "timings": doc.get("timings", {}),
            "qemu_s": round(run.seconds, 2), "timed_out": run.timed_out, "qemu_exit": run.returncode,
            "lookups_by_index": by_index, "files": files}


def _finish(work: Path, result: LaneResult, keep: bool) -> None:
    """Record the lane result in its run folder; a passing run drops its backing files."""
    (work / "lane.json").write_text(json.dumps(result.as_dict(), indent=1))
    if result.ok and not keep:
        for p in work.glob("nvdimm*.img"):
            p.unlink()


def two_nodes(kit: Kit, say: Say = quiet, keep: bool = False, timeout: float = 240.0) -> LaneResult:
    """Two guests on the same two backing files (share=on), each with its own device order: guest A
    sees [file 0, file 1] as dax0.0, dax1.0; guest B sees [file 1, file 0]. The master in A makes
    the famfs (stage 1: the golden-shaped namespace on the primary) with the project's appender on
    its /dev/daxN.0 and mounts it; the client in B waits, finds the primary by its superblock,
    mounts, reads; A appends stage 2 (ADD_DAXDEV + a file on index 1 + a cross-device interleave);
    both replay (SIGHUP: logplay) and read everything again. The host checks both nodes' views of
    both stages, and every lookup of both nodes in one checker (IDX-LOOKUP, IDX-CLUSTER)."""
    t0 = time.monotonic()
    work = run_dir("two-nodes")
    paths = [backing_file(work / f"nvdimm{i}.img", DEV_FILE_SIZE, kit, say) for i in range(2)]
    sizes = [dax_size(p) for p in paths]
    uuids = [Uuid(uuidlib.uuid4().bytes) for _ in paths]
    fs_uuid = Uuid(uuidlib.uuid4().bytes)
    orders = {"A": [0, 1], "B": [1, 0]}
    (work / "manifest.json").write_text(json.dumps({
        "uuids": [uuid_str(u) for u in uuids], "fs_uuid": uuid_str(fs_uuid), "ndev": 2}))
    guests = {}
    for node, order in orders.items():
        role = "master" if node == "A" else "client"
        guests[node] = Guest(kit, node, [paths[i] for i in order], work,
                             guest_script(role, "--node", node, "--result", f"/tmp/rd/result-{node}.json",
                                          "--manifest", "/tmp/rd/manifest.json"),
                             timeout=timeout, script_name=f"run-{node}.sh")
    say("realdax: two-nodes: booting guests A (master) and B (client) on one memory")
    for g in guests.values():
        g.start()
    runs = {}
    try:
        for node, g in guests.items():
            runs[node] = g.wait_for(work / f"result-{node}.json")
    finally:
        for g in guests.values():
            g.kill()
    problems: list[str] = []
    checker = LookupChecker(expected={0: uuids[0], 1: uuids[1]})
    nfiles = nbytes = 0
    docs = {}
    for node, (run, _) in runs.items():
        try:
            docs[node] = guest_result(work / f"result-{node}.json", run)
        except RealdaxError as e:
            problems.append(f"HARNESS: node {node}: {e}")
    for node, doc in docs.items():
        p1, f1, b1 = _check_guest(node, doc, orders[node], uuids, sizes, expected_namespace(STAGE1), checker, "before")
        p2, f2, b2 = _check_guest(node, dict(doc, lookups=[]), orders[node], uuids, sizes,
                                  expected_namespace(STAGE1 + STAGE2), checker, "after")
        problems += p1 + [p for p in p2 if not p.startswith("HARNESS")]
        nfiles, nbytes = nfiles + f1 + f2, nbytes + b1 + b2
    lookups = _check_lookups(checker, problems)
    if len(docs) == 2:
        per_node = {n for n in (e["node"] for d in docs.values() for e in d.get("lookups", []))}
        if per_node != {"A", "B"}:
            problems.append(f"IDX-CLUSTER: lookups came back from {sorted(per_node)} only; both nodes must be checked")
    result = LaneResult("two-nodes", problems, nfiles, nbytes, lookups,
                        {n: round(t, 2) for n, (_, t) in runs.items()}, time.monotonic() - t0,
                        {n: _summary(docs.get(n, {}), r) for n, (r, _) in runs.items()}, show_path(work))
    _finish(work, result, keep)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """`scripts/realdax-vm VERB`: setup | smoke | two-nodes."""
    import argparse
    ap = argparse.ArgumentParser(prog="realdax-vm", description="real device-dax in qemu guests")
    ap.add_argument("verb", choices=["setup", "smoke", "two-nodes"])
    ap.add_argument("--json", action="store_true", help="print the result as one JSON document")
    ap.add_argument("--keep", action="store_true", help="keep the run folder (backing files, consoles)")
    args = ap.parse_args(argv)
    def say(s: str) -> None:
        print(s, file=sys.stderr, flush=True)
    try:
        kit = setup(say)
        if args.verb == "setup":
            return 0
        lane = smoke if args.verb == "smoke" else two_nodes
        r = lane(kit, say, keep=args.keep)
    except RealdaxError as e:
        print(f"realdax-vm: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r.as_dict(), indent=1))
    else:
        times = ", ".join(f"guest {n} {t:.1f} s" for n, t in r.boot_to_result_s.items())
        print(f"realdax-vm {r.lane}: {'PASS' if r.ok else 'FAIL'}: {r.files_checked} files "
              f"({r.bytes_checked / MiB:.1f} MiB) checked, {r.lookups_checked} lookups checked; "
              f"boot to result: {times}; wall {r.wall_s:.1f} s")
        for p in r.problems:
            print(f"  {p}")
        print(f"  run folder: {r.run_dir}")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
