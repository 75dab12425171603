"""Real device-dax in qemu guests, the machinery: the build cache (kernel + initramfs), NVDIMM
backing files that boot as devdax, and booting guests with a timeout. The lanes that use it are
`realdax.lanes` (smoke, two nodes: `scripts/realdax-vm`) and `realdax.fuzz` (`fuzz --dax real`);
what runs inside a guest is the agent, `realdax.agent`.

The recipe (see the README, "Real device-dax"): a Debian kernel from the Debian registry, unpacked
once with `dpkg -x`; an initramfs of busybox-static and the closure of the modules we need
(libnvdimm, nfit, nd_pmem, dax_pmem, device_dax, fuse, 9p over virtio) taken from `modules.dep`;
the uncompressed kernel cut out of vmlinuz once (xz under TCG costs seconds per boot). qemu runs
under TCG (`-accel tcg`, never KVM: nested KVM on the machines this was built on hangs the
guest). Each guest gets emulated NVDIMMs backed by host files with `share=on`, the host root
read-only over 9p (tag `hostroot`: the guest runs this tree with this interpreter), and one
writable 9p share (tag `rd`) for the run script, case files and results. The guest's `/init`
runs the script named by `rdscript=` from that share in a chroot of the host root, then powers
off with sysrq `o`; `-no-reboot` and `panic=-1` make a crashed guest end qemu, and a guest past
its timeout is killed.

Device-dax layout: namespaces are made `--mode=devdax --map=mem` (the page map stays in guest
RAM), so device offset X is backing-file offset `DATA_OFFSET` (2 MiB) + X. Formatting needs
`ndctl` in a guest once per backing-file size; the first `HEADER_BYTES` of a formatted file
(label-less NVDIMM: the info block at 4 KiB) are cached, and copying them into a fresh sparse
file makes `/dev/daxN.0` appear at boot without ndctl. The host writes famfs images straight
into the backing files (`map_device`: a MAP_SHARED mapping at offset 2 MiB): the guest sees those
bytes on its devdax, live, as CXL nodes see one memory.

Everything is cached under `.cache/realdax/` in the checkout (gitignored; `FAMFS_FUZZ_REALDAX_CACHE`
moves it); a second `setup` only checks. Errors of set-up or of a guest are `RealdaxError` (a
harness problem, never a famfs finding); `.skip_reason` tells a test why the lane cannot run here.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import lzma
import mmap
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from harness import project
from harness.engine.errors import HarnessError

REPO = project.root()                               # the tree the guest runs (this one, or a test's copy)
CACHE = Path(os.environ.get("FAMFS_FUZZ_REALDAX_CACHE") or REPO / ".cache" / "realdax")
MiB = 1 << 20
DATA_OFFSET = 2 * MiB                 # --map=mem: device offset X lives at backing-file offset 2 MiB + X
DEV_FILE_SIZE = 1 << 30               # each NVDIMM's backing file: a 1022 MiB devdax (golden: 1 GiB)
FUZZ_FILE_SIZE = 18 * MiB             # an 18 MiB NVDIMM is a 16 MiB devdax: the e2e cases' DEV_SIZE
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


def quiet(_: str) -> None:
    pass


def show_path(path: Path) -> str:
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
mkdir -p /hosttmp
mount --bind /host/tmp /hosttmp
mount -t tmpfs -o size=256m tmp /host/tmp
for w in $(cat /proc/cmdline); do case $w in rdkeep=*)
    d=${w#rdkeep=}; mkdir -p /host/tmp/$d; mount --bind /hosttmp/$d /host/tmp/$d;; esac; done
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
    """The versioned package behind `linux-image-amd64` (e.g. linux-image-6.1.0-56-amd64). A fresh
    machine may have empty package lists: then `apt-get update` once (as root) and ask again."""
    for attempt in range(2):
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            dep = line.strip().removeprefix("Depends:").strip()
            if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
                return dep
        if attempt == 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
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
        found = by_name.get(name.replace("-", "_"))
        if found is None:
            raise RealdaxError(f"kernel module {name} not in modules.dep")
        visit(found)
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


def setup(say: Say = quiet, cache: Path = CACHE) -> Kit:
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
    nice: int = 10                    # TCG takes a whole core per guest: let everything else go first
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    console_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.console_path = self.share / f"console-{self.name}.log"

    def command(self) -> list[str]:
        sizes = [p.stat().st_size for p in self.backing]
        maxmem = self.memory_mib * MiB + sum(sizes) + len(sizes) * 256 * MiB
        memory = f"{self.memory_mib}M,slots={len(sizes)},maxmem={maxmem >> 20}M" if sizes else f"{self.memory_mib}M"
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", memory,
               "-machine", "pc,nvdimm=on", "-smp", "1,maxcpus=2", "-nographic", "-no-reboot",
               "-nic", "none", "-vga", "none", "-kernel", str(self.kit.kernel), "-initrd", str(self.kit.initrd),
               "-append", f"console=ttyS0 panic=-1 quiet loglevel=3 rdscript={self.script_name}"
               + "".join(f" rdkeep={d}" for d in kept_tmp_dirs())]
        for i, (path, size) in enumerate(zip(self.backing, sizes, strict=True)):
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
            self.proc = subprocess.Popen(["nice", "-n", str(self.nice), *self.command()], stdin=subprocess.DEVNULL,
                                         stdout=console, stderr=subprocess.STDOUT, start_new_session=True)

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


def kept_tmp_dirs() -> list[str]:
    """The guest mounts its own tmpfs over /tmp; a checkout or interpreter that lives under the
    host's /tmp would vanish behind it. These are the top-level /tmp directories (names, one
    component) that the guest binds back from the host root, read-only as the rest of it."""
    keep = set()
    for p in (REPO, Path(sys.prefix), Path(sys.executable)):
        parts = p.resolve().parts
        if len(parts) > 2 and parts[:2] == ("/", "tmp"):
            if any(c.isspace() for c in parts[2]) or parts[2] == "rd":
                raise RealdaxError(f"{p} is under /tmp/{parts[2]}, which a guest cannot keep; move it")
            keep.add(parts[2])
    return sorted(keep)


def guest_script(*args: str) -> str:
    """run.sh for a guest: the guest-side entry of this tree, with this interpreter (the host root
    is the guest's root, so the same paths work there)."""
    def q(a: str) -> str:
        return "'" + a.replace("'", "'\\''") + "'"
    return (f"cd {q(str(REPO))} || exit 97\n"
            "export HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
            f"export PYTHONPATH={q(str(REPO))}\n"
            f"exec {q(sys.executable)} -m harness.realdax.agent {' '.join(q(a) for a in args)}\n")


# -- backing files ------------------------------------------------------------------------------------


def backing_file(path: Path, size: int, kit: Kit, say: Say = quiet, cache: Path = CACHE) -> Path:
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
    result = guest_result(work / "result.json", run)
    if not result.get("ok"):
        raise RealdaxError(f"formatting failed in the guest: {result.get('error')}", console=run.console)
    for i, (raw, size) in enumerate(zip(raws, sizes, strict=True)):
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
        raise RealdaxError(f"{backing.name}: no formatted header of {backing.stat().st_size} bytes "
                           "in the cache") from None


def guest_result(path: Path, run: GuestRun) -> dict:
    """The guest's result document, or a RealdaxError carrying its console."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        why = "timed out" if run.timed_out else f"qemu exit {run.returncode}"
        tail = "\n".join(run.console.splitlines()[-25:])
        raise RealdaxError(f"guest {run.name} gave no result ({why}, {run.seconds:.1f} s); console tail:\n{tail}",
                           console=run.console) from None


# -- run folders and the host's view of a devdax ------------------------------------------------


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


def map_device(path: Path) -> mmap.mmap:
    """The host's MAP_SHARED view of the devdax data inside a backing file (offset 2 MiB on)."""
    size = dax_size(path)
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, offset=DATA_OFFSET)
    finally:
        os.close(fd)
