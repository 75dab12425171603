"""The real-DAX lanes of `scripts/realdax-vm`: `smoke` (one guest, two NVDIMMs, a golden-shaped
famfs written by the host, mounted and read through the daemon's FUSE mount on /dev/dax0.0 +
/dev/dax1.0) and `two_nodes` (a master and a client guest on one memory, in opposite device
order). The guests only observe (`realdax.agent.Mount.observe`: the log they saw, their walk, a
SHA-256 or errno per range of the oracle's read plan, their probe events); every check is made
here, on the host, by the same oracle code as the in-process and mount cases: the model's verdict
of that log, `Expectation.of` over the host's own view of the backing files, `check_listing` and
`check_files` (one range at a time, lookups first), every lookup of every node in one
`LookupChecker` (IDX-LOOKUP per node, IDX-CLUSTER across them). The device order and sizes each
guest saw are harness checks of the lane itself.
"""
from __future__ import annotations

import base64
import json
import sys
import time
import uuid as uuidlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.realdax.kit import (
    DEV_FILE_SIZE, MiB, Guest, GuestRun, Kit, RealdaxError, Say, backing_file, guest_result,
    guest_script, map_device, quiet, run_dir, setup, show_path,
)
from harness.tools.probelog import replay_into
from harness.famfs.image import Buffer, Image, Interleave
from harness.famfs.ids import Uuid, parse_uuid, uuid_str
from harness.gen.decode import log_image
from harness.gen.spec import AddDaxdev, Create, Mkdir, Op
from harness.oracle.case import Expectation, check_files, check_listing, observed_reader
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import InternalFinding, LookupChecker
from harness.oracle.model import verdict


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


def workload_paths(ops: Sequence[Op]) -> list[str]:
    """Every path the lane's workload makes (a log that lacks one makes the lane check less)."""
    return sorted(op.path for op in ops if isinstance(op, (Mkdir, Create)))


def judge_stage(node: str, stage: str, obs: dict, by_name: Mapping[str, Any], checker: LookupChecker,
                ops: Sequence[Op]) -> tuple[list[str], int, int]:
    """One node's observation of one stage (`realdax.agent.Mount.observe`), judged by the oracle
    as an in-process case is: the model's verdict of the log the node saw, the expectation of
    this node (its devices are the host's view of the backing files, `by_name`), the walk against
    the model's namespace (`check_listing`), every range the guest read and every lookup and
    internal error of its probe log (`check_files`, into the lane's one `checker`). Returns the
    problems (invariant-tagged lines), the files and the bytes checked."""
    tag = f"node {node}, {stage}"
    img = log_image(zlib.decompress(base64.b64decode(obs["head"])))
    if img is None:
        return [f"HARNESS: {tag}: the guest's copy of the primary's log cannot be decoded"], 0, 0
    expected = verdict(bytes(img.device), obs["size"])
    problems = []
    if sorted(p for p, _ in expected.namespace) != workload_paths(ops):
        problems.append(f"HARNESS: {tag}: the log holds {sorted(p for p, _ in expected.namespace)}, the lane "
                        f"wrote {workload_paths(ops)}")
    exp = Expectation.of(expected, node, by_name)
    exp.install(checker)
    events = [obs["events"]]

    def feed() -> None:                           # the stage's probe events, handed over once
        if events:
            replay_into(checker, events.pop())

    try:
        check_listing(expected, obs["walk"], node, site="realdax")
        check_files(expected.namespace, exp, observed_reader(obs["reads"]), checker, feed=feed)
    except InvariantViolation as v:
        problems.append(f"{v.invariant.value}: {tag}: {v.message}")
    except InternalFinding as f:
        problems.append(f"INTERNAL-ERROR: {tag}: {f}\n{f.error.traceback}")
    files = sum(1 for _, d in expected.namespace if d[0] == "f")
    return problems, files, sum(r[2] for r in obs["reads"] if r[3] is not None)


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


def check_guest(node: str, doc: dict, order: Sequence[int], uuids: Sequence[Uuid], sizes: Sequence[int],
                maps: Sequence[Any], checker: LookupChecker,
                stages: Mapping[str, Sequence[Op]]) -> tuple[list[str], int, int]:
    """One guest's result: its device order and sizes (harness checks: the guest's dax{k}.0 is
    backing file order[k]), then each stage it observed (`judge_stage`; `stages`: stage -> the
    workload done by then). Returns problems, files and bytes checked."""
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
    by_name = {f"dax{k}.0": maps[i] for k, i in enumerate(order)}
    nfiles = nbytes = 0
    for stage, ops in stages.items():
        obs = doc.get("stages", {}).get(stage)
        if obs is None:
            problems.append(f"HARNESS: node {node}: the guest observed no {stage!r} stage")
            continue
        p, f, b = judge_stage(node, stage, obs, by_name, checker, ops)
        problems, nfiles, nbytes = problems + p, nfiles + f, nbytes + b
    return problems, nfiles, nbytes


def lookups_checked(checker: LookupChecker, problems: list[str]) -> int:
    """How many lookups the lane judged; none at all is a problem (nothing was checked)."""
    if checker.checked == 0:
        problems.append("IDX-LOOKUP: no lookup events came back from the guest daemon (nothing was checked)")
    return checker.checked


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
    (work / "manifest.json").write_text(json.dumps({"node": "A", "ndev": 2}))
    say(f"realdax: smoke: booting one guest on 2 NVDIMMs ({show_path(work)})")
    guest = Guest(kit, "A", paths, work, guest_script("mount", "--result", "/tmp/rd/result-A.json",
                                                       "--manifest", "/tmp/rd/manifest.json"), timeout=timeout)
    run, t_result = guest.run_until(work / "result-A.json")
    doc = guest_result(work / "result-A.json", run)
    problems, nfiles, nbytes, lookups = judge_guests({"A": doc}, {"A": [0, 1]}, paths, uuids,
                                                     {"after": STAGE1 + STAGE2})
    result = LaneResult("smoke", problems, nfiles, nbytes, lookups, {"A": round(t_result, 2)},
                        time.monotonic() - t0, {"A": _summary(doc, run)}, show_path(work))
    _finish(work, result, keep)
    return result


def judge_guests(docs: Mapping[str, dict], orders: Mapping[str, Sequence[int]], paths: Sequence[Path],
                 uuids: Sequence[Uuid], stages: Mapping[str, Sequence[Op]]) -> tuple[list[str], int, int, int]:
    """Every guest's result (`check_guest`) against the host's own view of the backing files,
    with one lookup checker for all nodes (IDX-LOOKUP per node, IDX-CLUSTER across them).
    Returns problems, files, bytes and lookups checked."""
    maps = [map_device(p) for p in paths]
    try:
        sizes = [len(m) for m in maps]
        checker = LookupChecker(site="realdax/pull-devt")
        problems: list[str] = []
        nfiles = nbytes = 0
        for node, doc in docs.items():
            p, f, b = check_guest(node, doc, orders[node], uuids, sizes, maps, checker, stages)
            problems, nfiles, nbytes = problems + p, nfiles + f, nbytes + b
        return problems, nfiles, nbytes, lookups_checked(checker, problems)
    finally:
        for m in maps:
            m.close()


def _summary(doc: dict, run: GuestRun) -> dict:
    """What a guest saw, for the report: timings, each file's ranges read (or their errnos) in
    the last stage, and which local device answered each index (index 1 is dax1.0 on A, dax0.0 on B)."""
    by_index: dict[str, dict[str, int]] = {}
    stages = doc.get("stages", {})
    for e in (e for obs in stages.values() for e in obs.get("events", []) if e["ev"] == "lookup"):
        if not e["errno"]:
            names = by_index.setdefault(str(e["index"]), {})
            names[e["name"]] = names.get(e["name"], 0) + 1
    files: dict[str, Any] = {}
    for path, _, _, digest, err in stages.get("after", {}).get("reads", []):
        files.setdefault(path, []).append("read" if digest else err)
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
    docs = {}
    for node, (run, _) in runs.items():
        try:
            docs[node] = guest_result(work / f"result-{node}.json", run)
        except RealdaxError as e:
            problems.append(f"HARNESS: node {node}: {e}")
    more, nfiles, nbytes, lookups = judge_guests(docs, orders, paths, uuids,
                                                 {"before": STAGE1, "after": STAGE1 + STAGE2})
    problems += more
    if len(docs) == 2:
        per_node = {e["node"] for d in docs.values() for obs in d.get("stages", {}).values()
                    for e in obs.get("events", []) if e["ev"] == "lookup"}
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
