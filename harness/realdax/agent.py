"""The guest side of the real-DAX lane: runs inside a qemu guest (`python -m harness.realdax.agent`)
from the host's checkout, read-only over 9p, and writes one JSON result into the writable share.

Verbs:
* `format`: turn every label-less NVDIMM namespace into devdax (`ndctl create-namespace
  --mode=devdax --map=mem`), once per backing-file size; the host caches the header it leaves.
* `mount`: wait for the /dev/daxN.0 devices, serve them with `famfs-fuzz mount` (the real FUSE
  path, the daemon in a child process, its probe log in the guest's /tmp) and observe what the
  node sees (`Mount.observe`): the primary's log as it is, the walk, every range of the oracle's
  read plan of that log read through the mount (a SHA-256 or an errno each), every device's UUID
  as this node reads it, and the probe log's events. The host's oracle judges them with the same
  `check_files` as the in-process cases (`realdax.lanes`): this side only observes.
* `master` / `client`: the two-node lane's two roles (see `realdax.two_nodes`); they meet
  through flag files in the share.
* `cases`: the fuzz lane (`famfs-fuzz fuzz TARGET --dax real`): a batch of inputs through a
  target's case function with the images on the real devices, one outcome line per case.

The result document always has `ok` and, on failure, `error`; the console gets progress lines.
"""
from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import select
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from harness.tools.probelog import Tail


def say(msg: str) -> None:
    print(f"guest: {msg}", flush=True)


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def dax_devices() -> list[str]:
    """/dev/daxN.0 paths present now, in N order."""
    names = [os.path.basename(p) for p in glob.glob("/sys/bus/dax/devices/dax*")]
    found = [f"/dev/{n}" for n in names if os.path.exists(f"/dev/{n}")]
    return sorted(found, key=lambda p: [int(x) for x in p.removeprefix("/dev/dax").split(".")])


def wait_devices(n: int, timeout: float = 30.0) -> list[str]:
    end = time.monotonic() + timeout
    while True:
        found = dax_devices()
        if len(found) >= n or time.monotonic() > end:
            return found
        time.sleep(0.05)


def regions(timeout: float = 30.0) -> list[str]:
    end = time.monotonic() + timeout
    while True:
        found = sorted(glob.glob("/sys/bus/nd/devices/region*"))
        if found or time.monotonic() > end:
            return [os.path.basename(r) for r in found]
        time.sleep(0.05)


def write_result(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cmd_format(args: argparse.Namespace) -> dict[str, Any]:
    regs = regions()
    if not regs:
        return {"ok": False, "error": "no nd regions (nfit / libnvdimm did not find the NVDIMM)"}
    made = []
    for r in regs:
        ns = f"namespace{r.removeprefix('region')}.0"
        try:                # the region's default 16 MiB alignment refuses small NVDIMMs; 2 MiB is a subsection
            Path(f"/sys/bus/nd/devices/{r}/align").write_text(str(args.align))
        except OSError as e:
            say(f"{r}: align {args.align} refused: {e}")
        p = subprocess.run(["ndctl", "create-namespace", "-f", "-e", ns, "--mode=devdax", "--map=mem"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return {"ok": False, "error": f"ndctl create-namespace {ns}: {p.stderr.strip()}"}
        made.append(json.loads(p.stdout))
    devs = wait_devices(len(regs))
    sizes = {d: int(Path(f"/sys/bus/dax/devices/{os.path.basename(d)}/size").read_text()) for d in devs}
    return {"ok": True, "namespaces": made, "sizes": sizes}


# -- the mount and what a node sees through it --------------------------------------------------------


class Mount:
    """`famfs-fuzz mount` of this node's devices in a child process (the daemon), on a tmpfs
    mount point, its probe log in the guest's /tmp."""

    def __init__(self, node: str, devices: list[str], timeout: float = 120.0):
        self.node = node
        self.mnt = f"/tmp/famfs-{node}"
        self.log = f"/tmp/probe-{node}.jsonl"
        self.timeout = timeout
        os.makedirs(self.mnt, exist_ok=True)
        cmd = [sys.executable, "-m", "harness.cli", "mount", *devices, self.mnt, "--node", node,
               "--probe-log", self.log]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.tail = Tail(self.log)
        self.buf = b""
        line = self.line("mounted on")
        say(f"node {node}: {line}")

    def line(self, want: str) -> str:
        """The next stdout line containing `want` (other lines are echoed); RuntimeError if none."""
        assert self.proc.stdout is not None
        end = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                text = raw.decode(errors="replace")
                if want in text:
                    return text
                say(f"node {self.node} daemon: {text}")
            left = end - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                raise RuntimeError(f"node {self.node}: daemon gave no {want!r} line "
                                   f"(exit {self.proc.poll()}): {self.buf.decode(errors='replace')[-400:]}")
            self.buf += chunk

    def logplay(self) -> str:
        self.proc.send_signal(signal.SIGHUP)
        return self.line("logplay:")

    def walk(self) -> dict[str, dict[str, Any]]:
        """Every dir and file under the mount (the `.meta` folder aside): type, mode, owner, size."""
        out: dict[str, dict[str, Any]] = {}
        for root, dirs, files in os.walk(self.mnt):
            rel_root = os.path.relpath(root, self.mnt)
            if rel_root == ".":
                dirs[:] = [d for d in dirs if d != ".meta"]
            for name, kind in [(d, "d") for d in dirs] + [(f, "f") for f in files]:
                st = os.stat(os.path.join(root, name))
                doc = {"type": kind, "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}
                if kind == "f":
                    doc["size"] = st.st_size
                out[os.path.normpath(os.path.join(rel_root, name))] = doc
        return out

    def observe(self, primary: str) -> dict[str, Any]:
        """What this node sees now through the mount (`observation`), its primary read as it is."""
        from harness.cases.mount import MountReader
        from harness.famfs.devices import DaxDevice
        from harness.gen.decode import encode_image
        with DaxDevice.real(primary, node=self.node, readonly=True) as dev:
            head, size = encode_image(dev.view(0, dev.size)), dev.size
        with MountReader(self.mnt) as read:
            return observation(head, size, self.walk(), read, self.tail.new)

    def stop(self) -> None:
        """Unmount (SIGTERM: the daemon unmounts and exits)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def observation(head: bytes, size: int, walk: dict[str, dict[str, Any]], read: Any,
                events: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    """One stage as a node saw it, for the host's oracle to judge (`realdax.lanes.judge_stage`):
    the primary's log as it was (compact, `head`: zlib + base64) and its real size, the walk,
    every range of the oracle's read plan of that log read with `read` (`oracle.case.observe`:
    a SHA-256 or an errno each), and the probe events logged by then. Nothing is judged here."""
    from harness.gen.decode import log_image
    from harness.oracle.case import observe
    from harness.oracle.model import verdict
    img = log_image(head)
    namespace = verdict(bytes(img.device), size).namespace if img is not None else ()
    reads = observe(namespace, read)
    return {"head": base64.b64encode(zlib.compress(head)).decode(), "size": size, "walk": walk,
            "reads": reads, "events": events()}


def node_view(node: str, paths: list[str]) -> tuple[dict[str, str], dict[str, int], str | None]:
    """This node's devices as the harness reads them: local name -> UUID text (for the JSON result),
    name -> size, and the path of the primary (None if there is none)."""
    from harness.famfs.devices import DaxDevice
    from harness.famfs.resolver import Resolver
    from harness.famfs.errors import FamfsError
    from harness.famfs.ids import uuid_str
    devs = [DaxDevice.real(p, node=node, readonly=True) for p in paths]
    try:
        host = Resolver(node, devs)
        try:
            primary = host.primary().path
        except FamfsError:
            primary = None
        return {name: uuid_str(u) for name, u in host.uuids().items()}, {d.name: d.size for d in devs}, primary
    finally:
        for d in devs:
            d.close()


SHARE = "/tmp/rd"


def flag(name: str) -> None:
    with open(os.path.join(SHARE, f"flag-{name}"), "w") as f:
        f.write(f"{uptime()}\n")


def wait_flag(name: str, timeout: float = 150.0) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(os.path.join(SHARE, f"flag-{name}")):
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for the other node's {name!r}")
        time.sleep(0.05)


def _devices(n: int) -> list[str]:
    found = wait_devices(n)
    if len(found) < n:
        raise RuntimeError(f"{len(found)} devdax devices appeared ({found}), {n} expected")
    return found[:n]


def _serve(node: str, paths: list[str], primary: str, t: dict[str, float],
           stage2: Callable[[], None] | None = None) -> dict[str, Any]:
    """Mount `paths` (the primary first) and observe what the node sees; with `stage2`, run it
    (the master appends, the client waits for that), logplay and observe again. The result."""
    names, sizes, _ = node_view(node, paths)
    m = Mount(node, [primary] + [p for p in paths if p != primary])
    t["mounted"] = uptime()
    stages = {}
    try:
        stages["before" if stage2 else "after"] = m.observe(primary)
        t["read"] = uptime()
        if stage2 is not None:
            stage2()
            say(f"node {node}: {m.logplay()}")
            stages["after"] = m.observe(primary)
            t["read2"] = uptime()
    finally:
        m.stop()
    return {"ok": True, "names": names, "sizes": sizes, "primary": os.path.basename(primary), "stages": stages,
            "timings": t}


def _find_primary(node: str, paths: list[str]) -> str:
    primary = node_view(node, paths)[2]
    if primary is None:
        raise RuntimeError(f"no famfs primary among {paths}")
    return primary


def cmd_mount(args: argparse.Namespace) -> dict[str, Any]:
    """The smoke: mount this node's devices (the primary first), observe everything, report."""
    manifest = json.loads(Path(args.manifest).read_text())
    node = args.node or manifest.get("node", "A")
    t = {"start": uptime()}
    paths = _devices(manifest["ndev"])
    t["devices"] = uptime()
    return _serve(node, paths, _find_primary(node, paths), t)


def cmd_master(args: argparse.Namespace) -> dict[str, Any]:
    """Node A: mkfs + stage 1 with the project's appender on the real devdax, mount, observe;
    after the client has mounted, append stage 2, logplay, observe again."""
    from harness.realdax.lanes import STAGE1, STAGE2, apply_ops, mkfs_ops
    from harness.famfs.devices import DaxDevice
    from harness.famfs.ids import parse_uuid
    manifest = json.loads(Path(args.manifest).read_text())
    uuids = [parse_uuid(u) for u in manifest["uuids"]]
    t = {"start": uptime()}
    paths = _devices(manifest["ndev"])
    devs = [DaxDevice.real(p, node=args.node) for p in paths]
    views = [d.view(0, d.size) for d in devs]
    sizes = [d.size for d in devs]
    held: dict[str, Any] = {"views": views}
    held["image"] = mkfs_ops(views, sizes, uuids, parse_uuid(manifest["fs_uuid"]), STAGE1)
    del views
    t["stage1"] = uptime()
    flag("stage1")

    def stage2() -> None:
        wait_flag("B-mounted")
        apply_ops(held["image"], STAGE2, held["views"], sizes, uuids)
        t["stage2"] = uptime()
        flag("stage2")

    try:
        return _serve(args.node, paths, paths[0], t, stage2)
    finally:
        held.clear()                        # the views go before their devices are closed
        for d in devs:
            d.close()


def cmd_client(args: argparse.Namespace) -> dict[str, Any]:
    """Node B: wait for the master's famfs, find the primary among its own devices, mount,
    observe; after the master's stage 2, logplay and observe again."""
    manifest = json.loads(Path(args.manifest).read_text())
    t = {"start": uptime()}
    paths = _devices(manifest["ndev"])
    wait_flag("stage1")

    def stage2() -> None:
        flag("B-mounted")
        wait_flag("stage2")

    return _serve(args.node, paths, _find_primary(args.node, paths), t, stage2)


# -- the fuzz lane: a batch of cases on the real devices ------------------------------------------------


def real_e2e_mount(paths: list[str], workdir: str = "/tmp/e2e") -> Any:
    """The mount_e2e machinery (`harness.cases.mount.E2EMount`) on this guest's /dev/daxN.0 instead
    of shared files: each case's image is written into the devdax mappings, and the daemon child
    (`famfs-fuzz mount /dev/dax0.0=dax0.0 ...`) replays and serves the real devices."""
    import mmap

    from harness.engine.errors import HarnessError
    from harness.cases.mount import DEV_SIZE, NDEV, E2EMount
    from harness.tools.probelog import Tail
    from harness.famfs.devices import DaxDevice
    from harness.gen.spec import BufferPool
    if len(paths) < NDEV:
        raise HarnessError(f"the e2e cases need {NDEV} devdax devices, the guest has {paths}")
    m = E2EMount.__new__(E2EMount)              # not __init__: that makes device files; these are devices
    m.dir = Path(workdir)
    m.timeout = 90.0                            # Python in a TCG guest starts ~10x slower than natively
    m.paths = [Path(p) for p in paths[:NDEV]]
    m.mnt = m.dir / "mnt"
    m.mnt.mkdir(parents=True, exist_ok=True)
    m.log = m.dir / "probe.jsonl"
    m.log.touch()
    m.maps = []
    for p in m.paths:
        with DaxDevice.real(p) as dev:          # checks it is a devdax of the size the cases assume
            if dev.size != DEV_SIZE:
                raise HarnessError(f"{p} is {dev.size:#x} bytes; the e2e cases assume {DEV_SIZE:#x}")
        fd = os.open(p, os.O_RDWR)
        m.maps.append(mmap.mmap(fd, DEV_SIZE, mmap.MAP_SHARED))
        os.close(fd)
    m.proc = None
    m.tail = Tail(m.log)
    m.pool = BufferPool()
    return m


def read_cases(path: str) -> list[bytes]:
    """The host's batch: records of a little-endian u32 length and that many bytes."""
    data = Path(path).read_bytes()
    out, at = [], 0
    while at + 4 <= len(data):
        n = int.from_bytes(data[at:at + 4], "little")
        out.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return out


def cmd_cases(args: argparse.Namespace) -> dict[str, Any]:
    """Run the host's batch of cases through `args.target`'s case function on the real devices
    until the batch or `--max-time` runs out. One line per case goes to `--outcomes` before
    (`start`) and after (`done`, with the signature and traceback of a finding, and how many of
    `REPRO` re-runs hit it again), so the host knows the case in flight if the guest dies."""
    from harness.engine.registry import Target
    from harness.engine.runner import CaseRunner
    manifest = json.loads(Path(args.manifest).read_text())
    cases = read_cases(manifest["cases"])
    t0 = uptime()
    mount = real_e2e_mount(_devices(manifest["ndev"]))
    fn = {"mount_e2e": mount.case, "daemon_kill": mount.kill_case}[args.target]
    runner = CaseRunner(Target(args.target, one_input=fn, timeout_s=float(manifest["timeout_s"])))
    execs = lookups = findings = 0
    deadline = t0 + float(manifest["max_time"])
    with open(manifest["outcomes"], "a", buffering=1) as out:
        for i, data in enumerate(cases):
            if uptime() > deadline:
                break
            out.write(json.dumps({"i": i, "ev": "start"}) + "\n")
            sig, tb, n = runner.outcome(data)
            rec: dict[str, Any] = {"i": i, "ev": "done", "lookups": n}
            if sig is not None:
                findings += 1
                again = sum(1 for _ in range(REPRO) if runner.outcome(data)[0] == sig)
                rec.update(signature=sig.as_dict(), traceback=tb, reproduced=[again, REPRO])
                say(f"case {i}: {sig.title} ({again}/{REPRO} on re-run)")
            out.write(json.dumps(rec) + "\n")
            execs, lookups = execs + 1, lookups + n
    mount.close()
    seconds = uptime() - t0
    say(f"{execs} cases in {seconds:.1f} s, {lookups} lookups checked, {findings} findings")
    return {"ok": True, "execs": execs, "lookups": lookups, "findings": findings, "seconds": seconds}


REPRO = 3


VERBS = {"format": cmd_format, "mount": cmd_mount, "master": cmd_master, "client": cmd_client,
         "cases": cmd_cases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realdax.agent")
    ap.add_argument("verb", choices=sorted(VERBS))
    ap.add_argument("--result", required=True)
    ap.add_argument("--manifest")
    ap.add_argument("--node", default="")
    ap.add_argument("--target", default="mount_e2e", help="cases: the target whose case function runs")
    ap.add_argument("--align", type=int, default=2 << 20, help="format: region alignment")
    args = ap.parse_args(argv)
    say(f"{args.verb} at {uptime():.2f} s")
    try:
        doc = VERBS[args.verb](args)
    except Exception as e:  # noqa: BLE001 - the host gets it as a result, not a hung guest
        import traceback
        doc = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    doc["uptime"] = uptime()
    write_result(args.result, doc)
    say(f"{args.verb} done ok={doc['ok']} at {doc['uptime']:.2f} s")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
