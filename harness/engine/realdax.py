"""Real device-dax in qemu guests: the build cache (kernel + initramfs), booting guests on shared
NVDIMM backing files, and the lanes that use them (smoke, two nodes, fuzz cases).

The recipe (see the README, "Real DAX"): a Debian kernel from the Debian registry, unpacked once
with `dpkg -x`; an initramfs of busybox-static and the closure of the modules we need (libnvdimm,
nfit, nd_pmem, dax_pmem, device_dax, fuse, 9p over virtio) taken from `modules.dep`; the
uncompressed kernel cut out of vmlinuz once (xz under TCG costs seconds per boot). qemu runs
under TCG (`-accel tcg`, never KVM: nested KVM on the machines this was built on hangs the
guest). Each guest gets emulated NVDIMMs backed by host files with `share=on`, the host root
read-only over 9p (tag `hostroot`: the guest runs this checkout and its `.venv`), and one
writable 9p share (tag `rd`) for the run script, case files and results. The guest's `/init`
runs `run.sh` from that share in a chroot of the host root, then powers off with sysrq `o`;
`-no-reboot` and `panic=-1` make a crashed guest end qemu, and a guest past its timeout is killed.

Device-dax layout: namespaces are made `--mode=devdax --map=mem` (the page map stays in guest
RAM), so device offset X is backing-file offset `DATA_OFFSET` (2 MiB) + X. Formatting needs
`ndctl` in a guest once per backing-file size; the first `HEADER_BYTES` of a formatted file
(label-less NVDIMM: the info block at 4 KiB) are cached, and copying them into a fresh sparse
file makes `/dev/daxN.0` appear at boot without ndctl. The host writes famfs images straight
into the backing files (a MAP_SHARED mapping at offset 2 MiB): the guest sees those bytes on its
devdax, live, as CXL nodes see one memory.

Everything is cached under `.cache/realdax/` in the checkout (gitignored); a second `setup` only
checks. Errors of set-up or of a guest are `RealdaxError` (a harness problem, never a famfs
finding); `.skip_reason` tells a test why the lane cannot run here.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import time
import uuid as uuidlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from harness.engine.crashstore import HarnessError
from harness.famfs.image import Buffer, Image, Interleave, pattern
from harness.famfs.index import uuid_str
from harness.gen.spec import AddDaxdev, Create, Mkdir, Op
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import LookupChecker

REPO = Path(__file__).resolve().parents[2]          # the tree the guest runs (this one, or a test's copy)
CACHE = Path(os.environ.get("FAMFS_FUZZ_REALDAX_CACHE") or REPO / ".cache" / "realdax")
MiB = 1 << 20
DATA_OFFSET = 2 * MiB                 # --map=mem: device offset X lives at backing-file offset 2 MiB + X
DEV_FILE_SIZE = 1 << 30               # each NVDIMM's backing file: a 1022 MiB devdax (golden: 1 GiB)
HEADER_BYTES = 8 << 10                # what a formatted backing file holds before DATA_OFFSET
WANT_MODULES = ("nfit", "nd_pmem", "dax_pmem", "device_dax", "fuse", "9p", "9pnet_virtio", "virtio_pci")
TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "cpio": "cpio", "depmod": "kmod", "ndctl": "ndctl",
         "daxctl": "daxctl", "dpkg": "dpkg", "apt-get": "apt"}
BUSYBOX = Path("/bin/busybox")        # busybox-static
KIT_VERSION = 3                       # bump when the initramfs recipe changes

Say = Callable[[str], None]


class RealdaxError(HarnessError):
    """Raised when the real-DAX lane cannot be set up (missing tools, no kernel package) or a
    guest misbehaves (timeout, no result). `skip_reason` is set when the lane cannot run on
    this machine at all, so tests skip with that reason instead of failing."""

    def __init__(self, message: str, *, skip_reason: str | None = None, console: str = ""):
        super().__init__(message)
        self.skip_reason = skip_reason
        self.console = console


def _quiet(_: str) -> None:
    pass


def _rel(path: Path) -> str:
    """`path` as shown to users: relative to the working directory when below it."""
    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else rel


# -- set-up: kernel, modules, initramfs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kit:
    """What a guest boots: an uncompressed kernel and a gzip'd initramfs."""

    kernel: Path
    initrd: Path
    version: str


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/sysrq
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
mkdir -p /host
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /host; then
    echo "realdax: cannot mount the host root"; echo o > /proc/sysrq-trigger; sleep 60
fi
mount --bind /proc /host/proc
mount --bind /sys /host/sys
mount --bind /dev /host/dev
mount -t tmpfs -o size=256m tmp /host/tmp
mkdir -p /host/tmp/rd
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none rd /host/tmp/rd
S=run.sh
for w in $(cat /proc/cmdline); do case $w in rdscript=*) S=${w#rdscript=};; esac; done
echo "realdax: up $(cut -d' ' -f1 /proc/uptime), running $S"
chroot /host /bin/sh /tmp/rd/$S
echo "realdax: exit $? at $(cut -d' ' -f1 /proc/uptime)"
sync
umount /host/tmp/rd 2>/dev/null
echo o > /proc/sysrq-trigger
sleep 60
"""


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None or os.path.exists(f"/usr/sbin/{tool}") or os.path.exists(f"/sbin/{tool}")


def missing_tools() -> list[str]:
    """Debian packages still needed on the host (what `scripts/realdax-vm setup` installs)."""
    need = sorted({pkg for tool, pkg in TOOLS.items() if not _have(tool)})
    if not _static(BUSYBOX):
        need.append("busybox-static")
    return need


def _static(path: Path) -> bool:
    """An ELF naming no dynamic loader in its first page is static (busybox-static, not busybox)."""
    try:
        head = path.read_bytes()[:4096]
        return head[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in head
    except OSError:
        return False


def _kernel_package() -> str:
    """The versioned package behind `linux-image-amd64` (e.g. linux-image-6.1.0-56-amd64)."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise RealdaxError("no linux-image-amd64 in the apt cache (run apt-get update)",
                       skip_reason="no Debian kernel package available from apt")


def module_closure(modules_dep: str, want: Sequence[str]) -> list[str]:
    """Relative .ko paths for `want` and everything they depend on, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        by_name[os.path.basename(mod).split(".ko")[0].replace("-", "_")] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in deps.get(mod, []):
            visit(d)
        order.append(mod)
    for name in want:
        mod = by_name.get(name.replace("-", "_"))
        if mod is None:
            raise RealdaxError(f"kernel module {name} not in modules.dep")
        visit(mod)
    return order


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The uncompressed ELF kernel inside an xz-compressed bzImage."""
    at = vmlinuz.find(b"\xfd7zXZ\x00")
    while at >= 0:
        try:
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[at:])
        except lzma.LZMAError:
            out = b""
        if out[:4] == b"\x7fELF":
            return out
        at = vmlinuz.find(b"\xfd7zXZ\x00", at + 1)
    raise RealdaxError("no xz-compressed ELF kernel found inside vmlinuz")


def _init_hash() -> str:
    return hashlib.sha256(f"{KIT_VERSION}\n{INIT}\n{WANT_MODULES}".encode()).hexdigest()[:16]


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time (parallel test workers share the cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def setup(say: Say = _quiet, cache: Path = CACHE) -> Kit:
    """Make sure the kernel, the initramfs and the formatted devdax header of the lanes' backing
    files are in the cache; a second call only checks."""
    with _locked(cache):
        kit = _setup_kit(say, cache)
        sizes = [n for n in (DEV_FILE_SIZE, FUZZ_FILE_SIZE) if not (cache / f"header-{n}.json").exists()]
        if sizes:
            _format_headers(sizes, kit, say, cache)
    return kit


def _setup_kit(say: Say, cache: Path) -> Kit:
    missing = missing_tools()
    if missing:
        raise RealdaxError(f"missing Debian packages: {' '.join(missing)} (run scripts/realdax-vm setup)",
                           skip_reason=f"qemu lane not installed (missing {' '.join(missing)})")
    stamp = cache / "kit.json"
    try:
        doc = json.loads(stamp.read_text())
        kit = Kit(Path(doc["kernel"]) if Path(doc["kernel"]).is_absolute() else cache / doc["kernel"],
                  cache / doc["initrd"], doc["version"])
        if doc.get("init") == _init_hash() and kit.kernel.exists() and kit.initrd.exists():
            say("realdax: kernel and initramfs up to date")
            return kit
    except (OSError, ValueError, KeyError):
        pass
    cache.mkdir(parents=True, exist_ok=True)
    pkg = _kernel_package()
    version = pkg.removeprefix("linux-image-")
    dl = cache / "dl"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir()
    say(f"realdax: apt-get download {pkg}")
    _run(["apt-get", "download", pkg], cwd=dl)
    deb = next(dl.glob(f"{pkg}_*.deb"))
    root = dl / "root"
    _run(["dpkg", "-x", str(deb), str(root)])
    _run(["depmod", "-b", str(root), version])
    moddir = root / "lib" / "modules" / version
    order = module_closure((moddir / "modules.dep").read_text(), WANT_MODULES)
    say(f"realdax: {len(order)} modules ({', '.join(os.path.basename(m).split('.ko')[0] for m in order)})")
    initramfs = dl / "initramfs"
    for d in ("bin", "proc", "sys", "dev", "host", "lib/modules", "tmp"):
        (initramfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, initramfs / "bin" / "busybox")
    for mod in order:
        shutil.copy2(moddir / mod, initramfs / "lib" / "modules" / os.path.basename(mod))
    (initramfs / "modules.order").write_text("\n".join(os.path.basename(m) for m in order) + "\n")
    (initramfs / "init").write_text(INIT)
    (initramfs / "init").chmod(0o755)
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=initramfs, capture_output=True, check=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=initramfs, input=files,
                             capture_output=True, check=True).stdout
    initrd = cache / "initrd.gz"
    initrd.write_bytes(gzip.compress(archive, 6))
    say("realdax: extracting the uncompressed kernel")
    kernel = cache / f"vmlinux-{version}"
    kernel.write_bytes(extract_vmlinux((root / "boot" / f"vmlinuz-{version}").read_bytes()))
    shutil.rmtree(dl, ignore_errors=True)
    stamp.write_text(json.dumps({"kernel": kernel.name, "initrd": initrd.name, "version": version,
                                 "init": _init_hash()}, indent=1))
    say(f"realdax: kit ready ({version}; kernel {kernel.stat().st_size >> 20} MiB, "
        f"initramfs {initrd.stat().st_size >> 10} KiB)")
    return Kit(kernel, initrd, version)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RealdaxError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-400:]}")


# -- guests ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuestRun:
    """How a guest ended: qemu's exit status, wall seconds, whether it was killed, its console."""

    name: str
    returncode: int
    seconds: float
    timed_out: bool
    console: str


@dataclass
class Guest:
    """One qemu guest: NVDIMMs on the given backing files (in this order: the guest's region N is
    the N-th file, so its /dev/daxN.0 is the N-th file), the host root read-only, `share` writable.
    `start()` writes `share/run.sh` and starts qemu; `wait()` returns a `GuestRun`."""

    kit: Kit
    name: str
    backing: Sequence[Path]
    share: Path
    script: str
    memory_mib: int = 1024
    timeout: float = 180.0
    script_name: str = "run.sh"
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    console_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.console_path = self.share / f"console-{self.name}.log"

    def command(self) -> list[str]:
        sizes = [p.stat().st_size for p in self.backing]
        maxmem = self.memory_mib * MiB + sum(sizes) + len(sizes) * 256 * MiB
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max",
               "-m", f"{self.memory_mib}M,slots={max(2, len(sizes))},maxmem={maxmem >> 20}M",
               "-machine", "pc,nvdimm=on", "-smp", "1,maxcpus=2", "-nographic", "-no-reboot",
               "-nic", "none", "-vga", "none", "-kernel", str(self.kit.kernel), "-initrd", str(self.kit.initrd),
               "-append", f"console=ttyS0 panic=-1 quiet loglevel=3 rdscript={self.script_name}"]
        for i, (path, size) in enumerate(zip(self.backing, sizes)):
            cmd += ["-object", f"memory-backend-file,id=mem{i},share=on,mem-path={path},size={size}",
                    "-device", f"nvdimm,memdev=mem{i},id=nv{i}"]
        cmd += ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
                "-virtfs", f"local,path={self.share},mount_tag=rd,security_model=none,multidevs=remap"]
        return cmd

    def start(self) -> None:
        self.share.mkdir(parents=True, exist_ok=True)
        (self.share / self.script_name).write_text(self.script)
        self.started = time.monotonic()
        with open(self.console_path, "wb") as console:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> GuestRun:
        assert self.proc is not None, "start() first"
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.0, self.timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        seconds = time.monotonic() - self.started
        console = self.console_path.read_text(errors="replace")
        return GuestRun(self.name, self.proc.returncode, seconds, timed_out, console)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def run(self) -> GuestRun:
        self.start()
        try:
            return self.wait()
        finally:
            self.kill()

    def wait_for(self, result: Path) -> tuple[GuestRun, float]:
        """Wait for the guest to end (or time out); also when `result` first appeared, in seconds
        after qemu started (boot to result), or the whole run if it never did."""
        assert self.proc is not None, "start() first"
        t_result = None
        end = self.started + self.timeout
        while self.proc.poll() is None and time.monotonic() < end:
            if t_result is None and result.exists():
                t_result = time.monotonic() - self.started
            time.sleep(0.05)
        run = self.wait()
        if t_result is None:
            t_result = run.seconds
        return run, t_result

    def run_until(self, result: Path) -> tuple[GuestRun, float]:
        self.start()
        try:
            return self.wait_for(result)
        finally:
            self.kill()


def guest_script(*args: str) -> str:
    """run.sh for a guest: the guest-side entry of this tree, with this interpreter (the host root
    is the guest's root, so the same paths work there)."""
    q = (lambda a: "'" + a.replace("'", "'\\''") + "'")
    return (f"cd {q(str(REPO))} || exit 97\n"
            "export HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
            f"export PYTHONPATH={q(str(REPO))}\n"
            f"exec {q(sys.executable)} -m harness.engine.realdax_guest {' '.join(q(a) for a in args)}\n")


# -- backing files ------------------------------------------------------------------------------------


def backing_file(path: Path, size: int, kit: Kit, say: Say = _quiet, cache: Path = CACHE) -> Path:
    """A fresh sparse backing file of `size` bytes that boots as a devdax (--map=mem) namespace:
    the cached formatted header of this size is copied in (one ndctl guest the first time)."""
    header = cache / f"header-{size}.bin"
    if not header.exists() or not header.with_suffix(".json").exists():
        with _locked(cache):
            if not header.with_suffix(".json").exists():
                _format_headers([size], kit, say, cache)
    with open(path, "wb") as f:
        f.write(header.read_bytes())
        f.truncate(size)
    return path


def _format_headers(sizes: Sequence[int], kit: Kit, say: Say, cache: Path) -> None:
    """Format one NVDIMM of each size in one guest (ndctl), and cache each one's header and
    devdax size. Region N of the guest is the N-th NVDIMM (checked by the lanes' device order)."""
    work = cache / "format"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    raws = []
    for i, size in enumerate(sizes):
        raws.append(work / f"nvdimm{i}.img")
        with open(raws[-1], "wb") as f:
            f.truncate(size)
    say(f"realdax: formatting NVDIMMs of {', '.join(f'{s >> 20} MiB' for s in sizes)} as devdax (--map=mem), once")
    run = Guest(kit, "format", raws, work, guest_script("format", "--result", "/tmp/rd/result.json"),
                timeout=240).run()
    result = _result(work / "result.json", run)
    if not result.get("ok"):
        raise RealdaxError(f"formatting failed in the guest: {result.get('error')}", console=run.console)
    for i, (raw, size) in enumerate(zip(raws, sizes)):
        with open(raw, "rb") as f:
            head = f.read(DATA_OFFSET)
        if head[HEADER_BYTES:].strip(b"\0"):
            raise RealdaxError(f"the formatted NVDIMM has data past {HEADER_BYTES} bytes before the devdax data")
        got = result["sizes"].get(f"/dev/dax{i}.0")
        if not got or not 0 < size - got <= 2 * DATA_OFFSET:
            raise RealdaxError(f"a {size}-byte NVDIMM gave devdax sizes {result['sizes']}")
        cache.joinpath(f"header-{size}.bin").write_bytes(head[:HEADER_BYTES])
        cache.joinpath(f"header-{size}.json").write_text(json.dumps({"dax_size": got}))
    shutil.rmtree(work, ignore_errors=True)


def dax_size(backing: Path, cache: Path = CACHE) -> int:
    """The devdax size the guest sees for a backing file made by `backing_file` (recorded when its
    size was formatted: 1 GiB gives 1022 MiB, the info area in front and the 2 MiB alignment)."""
    meta = cache / f"header-{backing.stat().st_size}.json"
    try:
        return int(json.loads(meta.read_text())["dax_size"])
    except (OSError, ValueError, KeyError):
        raise RealdaxError(f"{backing.name}: no formatted header of {backing.stat().st_size} bytes in the cache") from None


def _result(path: Path, run: GuestRun) -> dict:
    """The guest's result document, or a RealdaxError carrying its console."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        why = "timed out" if run.timed_out else f"qemu exit {run.returncode}"
        tail = "\n".join(run.console.splitlines()[-25:])
        raise RealdaxError(f"guest {run.name} gave no result ({why}, {run.seconds:.1f} s); console tail:\n{tail}",
                           console=run.console) from None


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
              uuids: Sequence[bytes]) -> None:
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


def mkfs_ops(devices: Sequence[Buffer], sizes: Sequence[int], uuids: Sequence[bytes], fs_uuid: bytes,
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


KEEP_RUNS = 8


def run_dir(lane: str, cache: Path = CACHE) -> Path:
    """A fresh folder for one lane run (the guests' writable share); older runs beyond the
    newest `KEEP_RUNS` are removed."""
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    for p in old[:max(0, len(old) - KEEP_RUNS + 1)]:
        shutil.rmtree(p, ignore_errors=True)
    d = runs / f"{lane}-{os.getpid()}-{time.time_ns()}"
    d.mkdir()
    return d


def _map_device(path: Path) -> "mmap.mmap":
    """The host's MAP_SHARED view of the devdax data inside a backing file (offset 2 MiB on)."""
    import mmap
    size = dax_size(path)
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, offset=DATA_OFFSET)
    finally:
        os.close(fd)


def _check_guest(node: str, doc: dict, order: Sequence[int], uuids: Sequence[bytes], sizes: Sequence[int],
                 want: dict[str, dict], checker: LookupChecker, key: str = "after") -> tuple[list[str], int, int]:
    """One guest's result against the expectation: device order and sizes, namespace, bytes; its
    lookups go into `checker` (checked by the caller, across nodes). Returns problems, files, bytes."""
    if not doc.get("ok"):
        return [f"HARNESS: node {node}: guest failed: {doc.get('error')}"], 0, 0
    problems = []
    names = doc["names"]                                     # local name -> UUID, read by the guest
    for k, i in enumerate(order):
        local = f"dax{k}.0"
        if names.get(local) != uuid_str(uuids[i]):
            problems.append(f"HARNESS: node {node}: {local} carries {names.get(local)}, expected backing "
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


def smoke(kit: Kit, say: Say = _quiet, keep: bool = False, timeout: float = 150.0) -> LaneResult:
    """One guest, two NVDIMMs. The host writes the golden-shaped famfs (both stages) into the
    backing files; the guest mounts the daemon on /dev/dax0.0 + /dev/dax1.0 through FUSE and reads
    every file; the host checks namespace, bytes and every lookup."""
    t0 = time.monotonic()
    work = run_dir("smoke")
    paths = [backing_file(work / f"nvdimm{i}.img", DEV_FILE_SIZE, kit, say) for i in range(2)]
    maps = [_map_device(p) for p in paths]
    sizes = [len(m) for m in maps]
    uuids = [uuidlib.uuid4().bytes for _ in paths]
    try:
        mkfs_ops(maps, sizes, uuids, uuidlib.uuid4().bytes, STAGE1 + STAGE2)
    finally:
        for m in maps:
            m.close()
    ops = STAGE1 + STAGE2
    want = expected_namespace(ops)
    (work / "manifest.json").write_text(json.dumps({"node": "A", "ndev": 2}))
    say(f"realdax: smoke: booting one guest on 2 NVDIMMs ({_rel(work)})")
    guest = Guest(kit, "A", paths, work, guest_script("mount", "--result", "/tmp/rd/result-A.json",
                                                       "--manifest", "/tmp/rd/manifest.json"), timeout=timeout)
    run, t_result = guest.run_until(work / "result-A.json")
    doc = _result(work / "result-A.json", run)
    checker = LookupChecker(expected={0: uuid_str(uuids[0]), 1: uuid_str(uuids[1])})
    problems, nfiles, nbytes = _check_guest("A", doc, [0, 1], uuids, sizes, want, checker)
    lookups = _check_lookups(checker, problems)
    result = LaneResult("smoke", problems, nfiles, nbytes, lookups, {"A": round(t_result, 2)},
                        time.monotonic() - t0, {"A": _summary(doc, run)}, _rel(work))
    _finish(work, run.console, result, keep)
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


def _finish(work: Path, console: str, result: LaneResult, keep: bool) -> None:
    (work / "lane.json").write_text(json.dumps(result.as_dict(), indent=1))
    if result.ok and not keep:
        for p in work.glob("nvdimm*.img"):
            p.unlink()


def two_nodes(kit: Kit, say: Say = _quiet, keep: bool = False, timeout: float = 240.0) -> LaneResult:
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
    uuids = [uuidlib.uuid4().bytes for _ in paths]
    fs_uuid = uuidlib.uuid4().bytes
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
    checker = LookupChecker(expected={0: uuid_str(uuids[0]), 1: uuid_str(uuids[1])})
    nfiles = nbytes = 0
    docs = {}
    for node, (run, _) in runs.items():
        try:
            docs[node] = _result(work / f"result-{node}.json", run)
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
                        {n: _summary(docs.get(n, {}), r) for n, (r, _) in runs.items()}, _rel(work))
    _finish(work, "", result, keep)
    return result


# -- the fuzz lane: `famfs-fuzz fuzz TARGET --dax real` ---------------------------------------------------

# Targets whose cases run on real devdax: the ones built on the mount_e2e machinery (generated
# spec images + any corruption operator, written onto the devices, mounted by the daemon child
# through FUSE, every byte and lookup checked). Their case functions run in the guest.
REAL_TARGETS = ("mount_e2e", "daemon_kill")
FUZZ_FILE_SIZE = 18 * MiB              # an 18 MiB NVDIMM is a 16 MiB devdax: the e2e cases' DEV_SIZE
GUEST_SLOWDOWN = 6.0                   # per-case timeouts in the guest: Python under TCG is ~10x slower
BOOT_ALLOWANCE = 90.0


def case_inputs(target: str, *, count: int, seed: int, corpora: Path, max_len: int,
                inputs: Sequence[Path] = ()) -> list[bytes]:
    """The batch for one boot: `inputs` if given; else the target's corpus files (seeds and
    regress), then `count` more, each a corpus file with a few bytes changed or fresh random bytes
    (choice streams decode from any bytes). Deterministic in `seed`."""
    import random
    if inputs:
        return [Path(p).read_bytes() for p in inputs]
    base = sorted((p for p in (corpora / target).rglob("*") if p.is_file() and not p.name.startswith(".")),
                  key=str)
    out = [p.read_bytes()[:max_len] for p in base]
    rng = random.Random(seed)
    for _ in range(count):
        if out and rng.random() < 0.5:
            data = bytearray(rng.choice(out) or b"\0")
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append(bytes(data))
        else:
            out.append(rng.randbytes(rng.randint(8, max_len)))
    return out


def fuzz_real(target: str, *, max_time: float = 60.0, runs: int | None = None, seed: int | None = None,
              crashers: Path = Path("crashers"), corpora: Path = Path("corpora"),
              inputs: Sequence[Path] = (), say: Say = _quiet) -> "FuzzResult":
    """Run `target`'s cases on real devdax in one guest (three 16 MiB NVDIMMs): the host writes the
    batch into the share, the guest runs as many as `max_time` allows (or `runs`), and every
    finding comes back as an ordinary crash folder under `crashers/<target>/`, with the guest's
    console saved beside it as `console.log`. A guest that dies or hangs in a case is a finding
    against that case's input."""
    from harness.engine.campaign import FuzzResult
    from harness.engine.crashstore import CrashStore, atomic_write
    from harness.engine.registry import load
    from harness.engine.runner import repro_command
    from harness.engine.signature import Signature
    if target not in REAL_TARGETS:
        raise RealdaxError(f"--dax real runs {', '.join(REAL_TARGETS)}; not {target!r}")
    spec = load(target)
    seed = seed if seed is not None else int(time.time()) & 0x7FFFFFFF
    kit = setup(say)
    work = run_dir(f"fuzz-{target}")
    paths = [backing_file(work / f"nvdimm{i}.img", FUZZ_FILE_SIZE, kit, say) for i in range(3)]
    count = runs if runs is not None else max(50, int(max_time * 10))
    batch = case_inputs(target, count=count, seed=seed, corpora=corpora, max_len=spec.max_len, inputs=inputs)
    if runs is not None and not inputs:
        batch = batch[:runs]
    with open(work / "cases.bin", "wb") as f:
        for data in batch:
            f.write(len(data).to_bytes(4, "little") + data)
    timeout_s = spec.timeout_s * GUEST_SLOWDOWN
    (work / "manifest.json").write_text(json.dumps({
        "ndev": 3, "cases": "/tmp/rd/cases.bin", "outcomes": "/tmp/rd/outcomes.jsonl",
        "max_time": max_time, "timeout_s": timeout_s}))
    say(f"realdax: {target}: {len(batch)} cases for up to {max_time:.0f} s in one guest on real devdax "
        f"({_rel(work)})")
    guest = Guest(kit, "fuzz", paths, work, guest_script("cases", "--target", target, "--result",
                                                         "/tmp/rd/result-fuzz.json", "--manifest",
                                                         "/tmp/rd/manifest.json"),
                  timeout=max_time + BOOT_ALLOWANCE + timeout_s * (1 + 3))
    run, _ = guest.run_until(work / "result-fuzz.json")
    outcomes = _outcomes(work / "outcomes.jsonl")
    done = {o["i"]: o for o in outcomes if o["ev"] == "done"}
    started = [o["i"] for o in outcomes if o["ev"] == "start"]
    try:
        doc = _result(work / "result-fuzz.json", run)
    except RealdaxError as e:
        if not started:                     # nothing ran: the lane itself is broken, not famfs
            raise
        doc = {"ok": False, "error": str(e)}
    if not doc.get("ok") and not started:
        raise RealdaxError(f"the guest ran no case: {doc.get('error')}", console=run.console)
    result = FuzzResult(target, "real-dax", seconds=float(doc.get("seconds") or run.seconds))
    result.logs.append(_rel(work / f"console-{guest.name}.log"))
    store = CrashStore(crashers)
    findings = [(batch[i], Signature.from_dict(o["signature"]), o.get("traceback", ""), o.get("reproduced"))
                for i, o in sorted(done.items()) if "signature" in o]
    lost = [i for i in started if i not in done]
    for i in lost:                          # the guest died (kernel panic, OOM) or hung inside this case
        kind = "timeout" if run.timed_out else "guest-death"
        tail = "\n".join(run.console.splitlines()[-60:])
        findings.append((batch[i], Signature.of(kind, target, ["realdax guest"]),
                         f"the real-DAX guest {'hung' if run.timed_out else 'died'} in case {i}; console tail:\n{tail}",
                         None))
    for data, sig, tb, reproduced in findings:
        folder = store.root / target / sig.key
        _, is_new = store.save(target, sig, data, traceback=tb, seed=seed, mode="real-dax",
                               repro_cmd=f"famfs-fuzz fuzz {target} --dax real --input {_rel(folder / 'input')}",
                               extra={"engine": "real-dax", "dax": "real", "console": "console.log",
                                      "repro_emulated": repro_command(folder)})
        if is_new:
            atomic_write(folder / "console.log", run.console.encode())
            if reproduced:
                store.set_reproduced(target, sig.key, reproduced[0], reproduced[1])
            result.new[sig.key] = sig.title
        result.signatures[sig.key] = sig.title
    result.execs = len(done) + len(lost)
    result.lookups = sum(o.get("lookups", 0) for o in done.values())
    result.findings = len(findings)
    (work / "lane.json").write_text(json.dumps(result.as_dict(), indent=1))
    if not findings:
        for p in paths:
            p.unlink()
    return result


def _outcomes(path: Path) -> list[dict]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    break                   # a torn last line: the guest died while writing it
    except OSError:
        pass
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`scripts/realdax-vm VERB`: setup | smoke | two-nodes."""
    import argparse
    ap = argparse.ArgumentParser(prog="realdax-vm", description=__doc__.split("\n")[0])
    ap.add_argument("verb", choices=["setup", "smoke", "two-nodes"])
    ap.add_argument("--json", action="store_true", help="print the result as one JSON document")
    ap.add_argument("--keep", action="store_true", help="keep the run folder (backing files, consoles)")
    args = ap.parse_args(argv)
    say = (lambda s: print(s, file=sys.stderr, flush=True))
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
