"""Benchmarks reported by `famfs-fuzz bench`: numbers measured in one run, ratios within that run.

Measured now: replay of a full 8 MiB log (15,420 entries: directories, simple and interleaved
files over three daxdevs, ADD_DAXDEV) against just CRC-and-seqnum checking the same entries, the
floor any replay has to pay. Each figure is the best of `repeat` timings (least disturbed by the
other tenants of a shared machine), in CPU time for what runs in this process. `--targets` adds
each target's rate in process (wall clock and per CPU second) and log_replay's under Atheris,
and judges each against the speed goals (`GOALS`).
"""
from __future__ import annotations

import struct
import time
from dataclasses import asdict, dataclass
from typing import Callable

from harness.famfs.image import Image, Interleave
from harness.famfs.layout import ENTRY_CRC, ENTRY_CRC_AT, ENTRY_SIZE, HEADER_SIZE, LOG_LEN, SimpleFmap, crc32, log_slots
from harness.famfs.replay import replay

_U64 = struct.Struct("<Q")


def full_log_image() -> tuple[bytearray, int]:
    """A primary whose 8 MiB log is full: every slot used. Returns (device, entries)."""
    au = 4096
    size = 256 << 20
    devices = [bytearray(size), bytearray(32 << 20), bytearray(32 << 20)]
    image = Image.mkfs(devices, log_len=LOG_LEN, alloc_unit=au)
    slots = log_slots(LOG_LEN)
    n = image.log.next_index
    first, d = n, 0
    while n < slots:
        k = (n - first) % 8
        if k == 0:
            image.mkdir(f"d{d}")
            d += 1
        elif k == 5:
            image.create(f"d{d - 1}/s{n}", 3 * au, interleave=Interleave(3, au, (0, 1, 2)), data=b"")
        else:
            image.create(f"d{d - 1}/f{n}", au, devindex=0, data=b"")
        n = image.log.next_index
    return devices[0], slots


def crc_only(device: bytearray, log_offset: int, entries: int) -> int:
    """Check CRC and seqnum of every entry, nothing else: the floor under any replay."""
    log = memoryview(device)[log_offset:log_offset + LOG_LEN]
    good = 0
    start, end, crc_at = ENTRY_CRC.start, ENTRY_CRC.end, ENTRY_CRC_AT
    for i in range(entries):
        at = HEADER_SIZE + ENTRY_SIZE * i
        if crc32(log[at + start:at + end]) == _U64.unpack_from(log, at + crc_at)[0] \
                and _U64.unpack_from(log, at)[0] == i:
            good += 1
    return good


def _best(fn: Callable[[], object], repeat: int, clock: Callable[[], float] = time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One bench run's numbers."""

    log_entries: int
    replay_s: float
    crc_only_s: float
    replay_over_crc: float
    replay_entries_per_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run(repeat: int = 5) -> BenchResult:
    device, entries = full_log_image()
    result = replay(device)
    if result.rejections or len(result.namespace.files) + len(result.namespace.dirs) + 2 != entries:
        raise RuntimeError(f"bench image did not replay cleanly: {result.rejections[:3]}")
    log_offset = result.superblock.log_offset
    if crc_only(device, log_offset, entries) != entries:
        raise RuntimeError("bench image has bad CRCs")
    # CPU time of this process, best of `repeat` alternating pairs: both passes are pure Python
    # in this process, and on a shared machine the wall clock would time the other tenants too
    t_replay = t_crc = float("inf")
    for _ in range(repeat):
        t_replay = min(t_replay, _best(lambda: replay(device), 1, time.process_time))
        t_crc = min(t_crc, _best(lambda: crc_only(device, log_offset, entries), 1, time.process_time))
    return BenchResult(entries, t_replay, t_crc, t_replay / t_crc, entries / t_replay)


@dataclass(frozen=True, slots=True)
class FuseResult:
    """Read throughput through a real FUSE mount against copying the same bytes from the mapping."""

    file_bytes: int
    read_size: int
    fuse_mb_s: float
    mmap_copy_mb_s: float
    fuse_over_mmap: float
    floor_mb_s: float              # the same reads from `fusefloor`: the mount's adapter, no famfs work
    floor_over_mmap: float
    golden_mount_s: float          # spawn `famfs-fuzz mount` on the golden image until it serves
    golden_daemon_mount_s: float   # in-process Daemon.mount on the golden image (replay + resolve)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def fuse_read(workdir: str, golden: str | None = None, size: int = 64 << 20, read_size: int = 128 << 10,
              repeat: int = 3) -> FuseResult:
    """Mount a one-file image in a child process and time 128 KiB reads of the whole file through
    the mount, against a plain copy of the same extents out of the device mapping; and the same
    reads from the floor (`fusefloor`: the same adapter and mount, a constant buffer behind it)."""
    import mmap
    import os
    import select
    import subprocess
    import sys

    from harness.famfs.daemon import Daemon
    from harness.famfs.devices import DaxDevice
    from harness.famfs.resolver import Resolver

    dev_path = os.path.join(workdir, "bench-dev0.img")
    mnt = os.path.join(workdir, "bench-mnt")
    os.makedirs(mnt, exist_ok=True)
    dev = bytearray(size + (16 << 20))
    image = Image.mkfs([dev], log_len=LOG_LEN)
    f = image.create("big", size)
    with open(dev_path, "wb") as out:
        out.write(dev)
    del dev

    def spawn(argv: list[str]) -> tuple[subprocess.Popen[str], float]:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", *argv],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 30)
        line = p.stdout.readline() if ready else ""
        if "mounted on" not in line:
            p.kill()
            raise RuntimeError(f"mount did not come up: {line}")
        return p, time.perf_counter() - t

    def stop(p: subprocess.Popen[str]) -> None:
        subprocess.run(["fusermount3", "-u", mnt], check=False, capture_output=True)
        p.wait(timeout=30)

    def via_fuse() -> None:
        fd = os.open(os.path.join(mnt, "big"), os.O_RDONLY)
        try:
            while os.read(fd, read_size):
                pass
        finally:
            os.close(fd)

    def timed_reads(argv: list[str]) -> float:
        proc, _ = spawn(argv)
        try:
            return _best(via_fuse, repeat)
        finally:
            stop(proc)
    t_fuse = timed_reads(["harness.cli", "mount", dev_path, mnt])
    t_floor = timed_reads(["harness.ops.fusefloor", mnt, str(size)])
    assert isinstance(f.fmap, SimpleFmap), f.fmap             # the bench file has one simple extent
    ext = f.fmap.extents[0]
    with open(dev_path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        def via_mmap() -> None:
            view = memoryview(mm)
            for off in range(ext.offset, ext.offset + size, read_size):
                bytes(view[off:off + read_size])
            view.release()
        t_mmap = _best(via_mmap, repeat)
    golden_s = daemon_s = float("nan")
    if golden:
        proc, golden_s = spawn(["harness.cli", "mount", golden, mnt])
        stop(proc)
        with DaxDevice.emulated_file(golden, name="dax0.0") as g:
            t = time.perf_counter()
            Daemon.mount(Resolver("bench", [g]), primary=g)
            daemon_s = time.perf_counter() - t
    mb = size / 1e6
    return FuseResult(size, read_size, mb / t_fuse, mb / t_mmap, t_mmap / t_fuse, floor_mb_s=mb / t_floor,
                      floor_over_mmap=t_mmap / t_floor, golden_mount_s=golden_s, golden_daemon_mount_s=daemon_s)


GOLDEN_RESOURCE = ("tests", "golden", "famfs-5d0919f", "primary-head.img.gz")


def golden_file(workdir: str) -> str | None:
    """The golden image (10 MiB head, extended to its 1 GiB device) in `workdir`, if the
    checkout has it; None otherwise."""
    import gzip
    import os
    from harness import project
    src = os.path.join(project.root(), *GOLDEN_RESOURCE)
    if not os.path.exists(src):
        return None
    path = os.path.join(workdir, "golden.img")
    with open(src, "rb") as f, open(path, "wb") as out:
        out.write(gzip.decompress(f.read()))
        out.truncate(1 << 30)
    return path


def target_rates(seconds: float = 3.0, names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """exec/s and lookups of each target in this process (no instrumentation): its corpus inputs,
    then random one-byte mutations of them, for `seconds` each."""
    import random as _random
    from pathlib import Path

    from harness.engine import allocator
    from harness.engine.campaign import corpus_inputs
    from harness.engine.registry import default_names, load
    from harness.engine.runner import CaseRunner
    allocator.tune()                    # as a fuzzing process does (engine/allocator.py)
    out = {}
    rng = _random.Random(1)
    for name in names or default_names():
        target = load(name)
        inputs = corpus_inputs([Path("corpora") / name]) or [b""]
        runner = CaseRunner(target, engine="bench", repro_times=0)
        start, cpu = time.perf_counter(), _cpu()
        while time.perf_counter() - start < seconds:
            data = bytearray(rng.choice(inputs))
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            runner.run_one(bytes(data))
        el, el_cpu = time.perf_counter() - start, _cpu() - cpu
        out[name] = {"execs_per_s": round(runner.stats.execs / el, 1),
                     "execs_per_cpu_s": round(runner.stats.execs / max(el_cpu, 1e-9), 1),
                     "lookups_checked": runner.stats.lookups, "findings": runner.stats.findings}
    return out


def _cpu() -> float:
    """CPU seconds of this process and of its children, ended (a killed daemon, an Atheris run)
    and alive (the zygote that forks the mount daemons, a daemon serving): on a shared machine,
    what one core of our own would have taken."""
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + _live_children_cpu()


def _live_children_cpu() -> float:
    """CPU seconds so far of this process's children that are not reaped yet, from /proc (0 where
    there is none). Once reaped, a child's whole time is in RUSAGE_CHILDREN: a difference of two
    `_cpu()` readings counts each child once."""
    import os
    me, total = os.getpid(), 0
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return 0.0
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:                     # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()     # after "pid (comm) ": state ppid ...
        if int(fields[1]) == me:
            total += int(fields[11]) + int(fields[12])   # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def atheris_rate(name: str = "log_replay", seconds: float = 5.0) -> dict[str, float]:
    """exec/s of target `name` under Atheris (instrumented, libFuzzer driving, one child process
    on one core) from its corpus, for `seconds`: libFuzzer's own count over the run."""
    import os
    import re
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory(prefix="famfs-bench-atheris-") as tmp:
        new = os.path.join(tmp, "corpus")            # libFuzzer adds inputs to the first folder only
        os.makedirs(new)
        cmd = [sys.executable, "-m", "harness.engine.atheris_main", "--target", name,
               "--crashers", os.path.join(tmp, "crashers"), "--stats", os.path.join(tmp, "stats.json"),
               f"-max_total_time={max(1, round(seconds))}", "-print_final_stats=1", new,
               os.path.join("corpora", name)]
        cpu = _cpu()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        el_cpu = _cpu() - cpu
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
    rate = re.search(r"stat::average_exec_per_sec:\s*(\d+)", p.stderr)
    if not execs or not rate:
        raise RuntimeError(f"no libFuzzer statistics from {name} (exit {p.returncode}): {p.stderr[-400:]}")
    n = int(execs.group(1))        # CPU includes the child's start-up and corpus load: a lower bound
    return {"execs": n, "execs_per_s": float(rate.group(1)), "execs_per_cpu_s": round(n / max(el_cpu, 1e-9), 1)}


@dataclass(frozen=True, slots=True)
class Goal:
    """One speed goal: `measure` names the figure in the bench document; `at_least` or, for a
    ratio, `at_most`."""

    row: str
    measure: tuple[str, ...]        # path into the bench document
    unit: str
    at_least: float | None = None
    at_most: float | None = None

    def judge(self, doc: dict[str, object]) -> dict[str, object]:
        value: object = doc
        for key in self.measure:
            value = value.get(key) if isinstance(value, dict) else None
        measured = float(value) if isinstance(value, (int, float)) else None
        if measured is None:
            met = None
        elif self.at_least is not None:
            met = measured >= self.at_least
        else:
            assert self.at_most is not None
            met = measured <= self.at_most
        goal = f">= {self.at_least:,.0f}" if self.at_least is not None else f"<= {self.at_most:g}"
        return {"row": self.row, "measured": measured, "unit": self.unit, "goal": f"{goal} {self.unit}",
                "met": met}


# Rates per CPU second ("1 core"): on a shared machine the wall-clock rate measures the other
# tenants too. mount_e2e is judged by the wall clock, as its goal was set; its daemon, alive
# through the run, counts in its per-CPU figure too (`_cpu`).
STRUCTURED = ("log_structured", "add_daxdev_order", "missing_primary", "device_faults")
GOALS = (
    *(Goal(n, ("targets", n, "execs_per_cpu_s"), "exec/s", at_least=1000) for n in STRUCTURED),
    Goal("mount_e2e", ("targets", "mount_e2e", "execs_per_s"), "exec/s", at_least=200),
    Goal("daemon_kill", ("targets", "daemon_kill", "execs_per_cpu_s"), "exec/s", at_least=20),
    Goal("log_replay under Atheris", ("atheris", "log_replay", "execs_per_cpu_s"), "exec/s", at_least=10_000),
    Goal("full 8 MiB log replay / CRC-only", ("replay", "replay_over_crc"), "x", at_most=5),
)


def judge(doc: dict[str, object]) -> list[dict[str, object]]:
    """Every goal of `GOALS` against the figures of this one bench run (`doc` as `--json` prints
    it): measured value, goal, and met (None when the run did not measure it)."""
    return [g.judge(doc) for g in GOALS]


def goal_lines(goals: list[dict[str, object]]) -> list[str]:
    out = [f"{'goal row':34} {'measured':>12} {'goal':>16}"]
    for g in goals:
        m = g["measured"]
        shown = "-" if m is None else (f"{m:,.1f}" if g["unit"] == "x" else f"{m:,.0f}")
        mark = "not measured" if g["met"] is None else ("met" if g["met"] else "NOT MET")
        out.append(f"{g['row']:34} {shown:>12} {g['unit']:<6} {g['goal']:>16}  {mark}")
    return out


def shm_states_rate(seconds: float = 3.0) -> dict[str, object]:
    """shm_states in this process: shared-memory states judged per second (wall clock and per CPU
    second) from its corpus and random one-byte mutations of it, and per operation kind the
    states the model admitted, how many the pruning removed (as 2^stores without it) and how many
    were run (`cases.shm.STATS`)."""
    import random as _random
    from pathlib import Path

    from harness.cases import shm as shmcase
    from harness.engine.campaign import corpus_inputs
    from harness.engine.registry import load
    from harness.engine.runner import CaseRunner
    target = load("shm_states")
    inputs = corpus_inputs([Path("corpora") / "shm_states"]) or [b""]
    runner = CaseRunner(target, engine="bench", repro_times=0)
    rng = _random.Random(1)
    shmcase.STATS.clear()
    start, cpu = time.perf_counter(), _cpu()
    while time.perf_counter() - start < seconds:
        data = bytearray(rng.choice(inputs)).ljust(shmcase.WORKLOAD + 8, b"\0")
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        runner.run_one(bytes(data))
    el, el_cpu = time.perf_counter() - start, _cpu() - cpu
    ops = shmcase.stats_table()
    run = sum(v["run"] for v in ops.values())
    return {"execs": runner.stats.execs, "findings": runner.stats.findings, "states_run": run,
            "states_per_s": round(run / el, 1), "states_per_cpu_s": round(run / max(el_cpu, 1e-9), 1),
            "ops": ops}


def shm_lines(doc: dict[str, object]) -> list[str]:
    """The bench's shm_states lines: the rate, then one line per operation kind."""
    out = [f"shm_states: {doc['states_run']:,} states judged, {doc['states_per_s']:,.0f} states/s, "
           f"{doc['states_per_cpu_s']:,.0f} per CPU s ({doc['execs']} cases, {doc['findings']} findings)",
           f"  {'operation':12} {'ops':>5} {'unpruned per op':>16} {'silent/op':>10} {'model states':>14} {'run':>8}"]
    for kind, v in doc["ops"].items():  # type: ignore[attr-defined]
        n = max(v["ops"], 1)
        out.append(f"  {kind:12} {v['ops']:>5} {'2^' + format(v['stores'] // n, ','):>16} {v['silent'] // n:>10,} "
                   f"{v['distinct']:>14,} {v['run']:>8,}")
    return out
