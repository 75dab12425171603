"""The interim main job: a replay + fsck smoke campaign over generated, corrupted images.

Until the fuzzing engine (targets, oracle, crash store, FUSE mount) lands, `./scripts/fuzz` runs
this and says so: random multi-device images built on emulated DAX files, each then corrupted by a
random byte edit (CRCs resealed or left stale), replayed and fsck'ed. Typed rejections are the
expected outcome for bad bytes; anything else escaping famfs is a crash and is written to
`OUT/crashes/` with the image that caused it.
"""
from __future__ import annotations

import json
import os
import random
import time
import traceback
from dataclasses import asdict, dataclass, field

from harness.famfs.errors import FamfsError
from harness.famfs.fsck import fsck
from harness.famfs.image import Image, Interleave
from harness.famfs.layout import HEADER_SIZE, reseal
from harness.famfs.replay import replay

DEV_SIZE = 32 << 20
LOG_LEN = 256 << 10


@dataclass
class SmokeStats:
    """Counts of one smoke run."""

    cases: int = 0
    clean: int = 0
    rejected_image: int = 0
    rejected_entries: int = 0
    fsck_findings: int = 0
    crashes: int = 0
    by_invariant: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def random_image(rng: random.Random) -> bytearray:
    ndev = rng.randint(1, 4)
    devices = [bytearray(DEV_SIZE) for _ in range(ndev)]
    image = Image.mkfs(devices, log_len=LOG_LEN)
    dirs = [""]
    for n in range(rng.randint(1, 24)):
        parent = rng.choice(dirs)
        path = f"{parent}/n{n}".lstrip("/")
        if rng.random() < 0.3:
            image.mkdir(path)
            dirs.append(path)
            continue
        size = rng.choice([0, 1, 4096, 3 << 20, rng.randint(1, 6 << 20)])
        try:
            if ndev > 1 and rng.random() < 0.4:
                image.create(path, size, interleave=Interleave(rng.randint(1, ndev), 2 << 20, tuple(range(ndev))), data=b"")
            else:
                image.create(path, size, devindex=rng.randrange(ndev), data=b"")
        except FamfsError:            # a full device: fine, the image just has fewer files
            break
    return devices[0]


def corrupt(rng: random.Random, device: bytearray) -> str:
    log_bytes = HEADER_SIZE + 544 * 32
    region = rng.choice([(0, 200), (2 << 20, (2 << 20) + log_bytes)])
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(*region)
        device[at] = rng.randrange(256)
    if rng.random() < 0.7:
        reseal(device)
        return "fix-all"
    return "raw"


def run_default(out: str, *, json_out: bool = False, max_time: float = 30.0, seed: int | None = None) -> int:
    seed = seed if seed is not None else int(time.time())
    rng = random.Random(seed)
    stats = SmokeStats()
    crash_dir = os.path.join(out, "crashes")
    start = last = time.monotonic()
    if not json_out:
        print(f"famfs-fuzz: the fuzzing engine is not built yet; running the replay + fsck smoke "
              f"campaign for {max_time:.0f} s (seed {seed})")
    while time.monotonic() - start < max_time:
        device = random_image(rng)
        mode = corrupt(rng, device)
        stats.cases += 1
        try:
            result = replay(device, device_size=DEV_SIZE)
            report = fsck(result)
        except FamfsError as e:
            stats.rejected_image += 1
            stats.by_invariant[e.invariant.value] = stats.by_invariant.get(e.invariant.value, 0) + 1
        except Exception:  # noqa: BLE001 - anything else is a crash of famfs: record it
            stats.crashes += 1
            os.makedirs(crash_dir, exist_ok=True)
            name = os.path.join(crash_dir, f"crash-{stats.crashes}")
            with open(name + ".img", "wb") as f:
                f.write(device[: (2 << 20) + LOG_LEN])
            with open(name + ".txt", "w") as f:
                f.write(f"mode {mode}\n{traceback.format_exc()}")
        else:
            stats.rejected_entries += len(result.rejections)
            stats.fsck_findings += len(report.findings)
            for e in (*result.rejections, *report.findings):
                stats.by_invariant[e.invariant.value] = stats.by_invariant.get(e.invariant.value, 0) + 1
            if result.clean and report.clean:
                stats.clean += 1
        if not json_out and time.monotonic() - last >= 5:
            last = time.monotonic()
            print(f"  {last - start:5.0f}s  {stats.cases} cases  {stats.crashes} crashes")
    stats.seconds = time.monotonic() - start
    doc = {"seed": seed, "mode": "replay-smoke", **asdict(stats)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(doc, f, indent=2)
    if json_out:
        print(json.dumps(doc, indent=2))
    else:
        print(f"done: {stats.cases} cases in {stats.seconds:.0f} s, {stats.clean} clean, "
              f"{stats.rejected_image} images rejected, {stats.rejected_entries} entries rejected, "
              f"{stats.fsck_findings} fsck findings, {stats.crashes} crashes")
        print("  by invariant: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.by_invariant.items())))
        print(f"  summary: {os.path.join(out, 'summary.json')}")
    return 1 if stats.crashes else 0
