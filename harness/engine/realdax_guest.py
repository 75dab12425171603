"""The guest side of the real-DAX lane: runs inside a qemu guest (`python -m harness.engine.realdax_guest`)
from the host's checkout, read-only over 9p, and writes one JSON result into the writable share.

Verbs:
* `format`: turn every label-less NVDIMM namespace into devdax (`ndctl create-namespace
  --mode=devdax --map=mem`), once per backing-file size; the host caches the header it leaves.
* `mount`: wait for the /dev/daxN.0 devices, serve them with `famfs-fuzz mount` (the real FUSE
  path, the daemon in a child process, its probe log on the share), read every file of the host's
  manifest through the mount and record each file's SHA-256 (or errno), every device's UUID as
  this node sees it, and the probe log's events. The host checks them (`realdax.py`): this side
  only observes, as the oracle would in-process.
* `master` / `client`: the two-node lane's two roles (see `realdax.two_nodes`); they meet
  through flag files in the share.
* `cases`: the fuzz lane (`famfs-fuzz fuzz TARGET --dax real`): a batch of inputs through a
  target's case function with the images on the real devices, one outcome line per case.

The result document always has `ok` and, on failure, `error`; the console gets progress lines.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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
        """Every dir and file under the mount (the `.meta` folder aside): type, mode, owner, size,
        and each file's SHA-256 read through the mount with read(2), or the errno it failed with."""
        out: dict[str, dict[str, Any]] = {}
        for root, dirs, files in os.walk(self.mnt):
            rel_root = os.path.relpath(root, self.mnt)
            if rel_root == ".":
                dirs[:] = [d for d in dirs if d != ".meta"]
            for d in dirs:
                st = os.stat(os.path.join(root, d))
                path = os.path.normpath(os.path.join(rel_root, d))
                out[path] = {"type": "d", "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}
            for f in files:
                full = os.path.join(root, f)
                path = os.path.normpath(os.path.join(rel_root, f))
                st = os.stat(full)
                doc: dict[str, Any] = {"type": "f", "size": st.st_size, "mode": st.st_mode & 0o7777,
                                       "uid": st.st_uid, "gid": st.st_gid}
                try:
                    h = hashlib.sha256()
                    with open(full, "rb", buffering=0) as fh:
                        while chunk := fh.read(1 << 20):
                            h.update(chunk)
                    doc["sha256"] = h.hexdigest()
                except OSError as e:
                    doc["errno"] = e.errno
                out[path] = doc
        return out

    def stop(self) -> list[dict[str, Any]]:
        """Unmount (SIGTERM: the daemon unmounts and exits); the probe log's lookup events."""
        from harness.engine.probelog import load
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return [e for e in load(self.log) if e["ev"] == "lookup"] if os.path.exists(self.log) else []


def node_view(node: str, paths: list[str]) -> tuple[dict[str, str], dict[str, int], str | None]:
    """This node's devices as the harness reads them: local name -> UUID text (for the JSON result),
    name -> size, and the path of the primary (None if there is none)."""
    from harness.famfs.devices import DaxDevice, Resolver
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


def cmd_mount(args: argparse.Namespace) -> dict[str, Any]:
    """The smoke: mount this node's devices (the primary first), read everything, report."""
    manifest = json.loads(Path(args.manifest).read_text())
    node = args.node or manifest.get("node", "A")
    t = {"start": uptime()}
    paths = _devices(manifest["ndev"])
    t["devices"] = uptime()
    names, sizes, primary = node_view(node, paths)
    if primary is None:
        return {"ok": False, "error": f"no famfs primary among {paths}", "names": names}
    m = Mount(node, [primary] + [p for p in paths if p != primary])
    t["mounted"] = uptime()
    try:
        after = m.walk()
        t["read"] = uptime()
    finally:
        lookups = m.stop()
    return {"ok": True, "names": names, "sizes": sizes, "after": after, "lookups": lookups, "timings": t}


def cmd_master(args: argparse.Namespace) -> dict[str, Any]:
    """Node A: mkfs + stage 1 with the project's appender on the real devdax, mount, read; after
    the client has mounted, append stage 2, logplay, read again."""
    from harness.engine.realdax_lanes import STAGE1, STAGE2, apply_ops, mkfs_ops
    from harness.famfs.devices import DaxDevice
    from harness.famfs.ids import parse_uuid
    manifest = json.loads(Path(args.manifest).read_text())
    uuids = [parse_uuid(u) for u in manifest["uuids"]]
    t = {"start": uptime()}
    paths = _devices(manifest["ndev"])
    devs = [DaxDevice.real(p, node=args.node) for p in paths]
    views = [d.view(0, d.size) for d in devs]
    sizes = [d.size for d in devs]
    image = mkfs_ops(views, sizes, uuids, parse_uuid(manifest["fs_uuid"]), STAGE1)
    t["stage1"] = uptime()
    flag("stage1")
    names, dsizes, _ = node_view(args.node, paths)
    m = Mount(args.node, paths)
    try:
        before = m.walk()
        wait_flag("B-mounted")
        apply_ops(image, STAGE2, views, sizes, uuids)
        t["stage2"] = uptime()
        flag("stage2")
        say(f"node {args.node}: {m.logplay()}")
        after = m.walk()
        t["read"] = uptime()
    finally:
        lookups = m.stop()
        del views, image
        for d in devs:
            d.close()
    return {"ok": True, "names": names, "sizes": dsizes, "before": before, "after": after,
            "lookups": lookups, "timings": t}


def cmd_client(args: argparse.Namespace) -> dict[str, Any]:
    """Node B: wait for the master's famfs, find the primary among its own devices, mount, read;
    after the master's stage 2, logplay and read again."""
    manifest = json.loads(Path(args.manifest).read_text())
    t = {"start": uptime()}
    paths = _devices(manifest["ndev"])
    wait_flag("stage1")
    names, sizes, primary = node_view(args.node, paths)
    if primary is None:
        return {"ok": False, "error": f"no famfs primary among {paths}", "names": names}
    m = Mount(args.node, [primary] + [p for p in paths if p != primary])
    try:
        before = m.walk()
        t["mounted"] = uptime()
        flag("B-mounted")
        wait_flag("stage2")
        say(f"node {args.node}: {m.logplay()}")
        after = m.walk()
        t["read"] = uptime()
    finally:
        lookups = m.stop()
    return {"ok": True, "names": names, "sizes": sizes, "before": before, "after": after,
            "lookups": lookups, "timings": t}


# -- the fuzz lane: a batch of cases on the real devices ------------------------------------------------


def real_e2e_mount(paths: list[str], workdir: str = "/tmp/e2e") -> Any:
    """The mount_e2e machinery (`harness.engine.e2e.E2EMount`) on this guest's /dev/daxN.0 instead
    of shared files: each case's image is written into the devdax mappings, and the daemon child
    (`famfs-fuzz mount /dev/dax0.0=dax0.0 ...`) replays and serves the real devices."""
    import mmap

    from harness.engine.crashstore import HarnessError
    from harness.engine.e2e import DEV_SIZE, NDEV, E2EMount
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
    m.log_at = 0
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
    ap = argparse.ArgumentParser(prog="realdax_guest")
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
