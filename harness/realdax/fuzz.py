"""The real-DAX fuzz lane (`famfs-fuzz fuzz TARGET --dax real`, `nightly --dax-real`): a batch of a
target's cases run in one qemu guest whose three 16 MiB NVDIMMs are real /dev/daxN.0 devices;
the case images are written onto them and replayed and served by the daemon there. The host
prepares the batch and turns every finding into an ordinary crash folder, the guest's console
attached as `console.log`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.realdax.kit import (
    FUZZ_FILE_SIZE, Guest, RealdaxError, Say, backing_file, guest_result, guest_script, quiet, run_dir,
    setup, show_path,
)

if TYPE_CHECKING:
    from harness.engine.campaign import FuzzResult


# Targets whose cases run on real devdax: the ones built on the mount_e2e machinery (generated
# spec images + any corruption operator, written onto the devices, mounted by the daemon child
# through FUSE, every byte and lookup checked). Their case functions run in the guest.
REAL_TARGETS = ("mount_e2e", "daemon_kill")
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
              inputs: Sequence[Path] = (), say: Say = quiet) -> "FuzzResult":
    """Run `target`'s cases on real devdax in one guest (three 16 MiB NVDIMMs): the host writes the
    batch into the share, the guest runs as many as `max_time` allows (or `runs`), and every
    finding comes back as an ordinary crash folder under `crashers/<target>/`, with the guest's
    console saved beside it as `console.log`. A guest that dies or hangs in a case is a finding
    against that case's input."""
    from harness.engine.campaign import FuzzResult
    from harness.engine.crashstore import CrashStore, atomic_write
    from harness.engine.registry import load
    from harness.engine.runner import repro_command
    from harness.engine.signature import Kind, Signature
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
        f"({show_path(work)})")
    guest = Guest(kit, "fuzz", paths, work, guest_script("cases", "--target", target, "--result",
                                                         "/tmp/rd/result-fuzz.json", "--manifest",
                                                         "/tmp/rd/manifest.json"),
                  timeout=max_time + BOOT_ALLOWANCE + timeout_s * (1 + 3))
    run, _ = guest.run_until(work / "result-fuzz.json")
    outcomes = _outcomes(work / "outcomes.jsonl")
    done = {o["i"]: o for o in outcomes if o["ev"] == "done"}
    started = [o["i"] for o in outcomes if o["ev"] == "start"]
    try:
        doc = guest_result(work / "result-fuzz.json", run)
    except RealdaxError as e:
        if not started:                     # nothing ran: the lane itself is broken, not famfs
            raise
        doc = {"ok": False, "error": str(e)}
    if not doc.get("ok") and not started:
        raise RealdaxError(f"the guest ran no case: {doc.get('error')}", console=run.console)
    result = FuzzResult(target, "real-dax", seconds=float(doc.get("seconds") or run.seconds))
    result.logs.append(show_path(work / f"console-{guest.name}.log"))
    store = CrashStore(crashers)
    findings = [(batch[i], Signature.from_dict(o["signature"]), o.get("traceback", ""), o.get("reproduced"))
                for i, o in sorted(done.items()) if "signature" in o]
    lost = [i for i in started if i not in done]
    for i in lost:                          # the guest died (kernel panic, OOM) or hung inside this case
        kind = Kind.TIMEOUT if run.timed_out else Kind.GUEST_DEATH
        tail = "\n".join(run.console.splitlines()[-60:])
        findings.append((batch[i], Signature.of(kind, target, ["realdax guest"]),
                         f"the real-DAX guest {'hung' if run.timed_out else 'died'} in case {i}; console tail:\n{tail}",
                         None))
    for data, sig, tb, reproduced in findings:
        folder = store.root / target / sig.key
        _, is_new = store.save(target, sig, data, traceback=tb, seed=seed, mode="real-dax",
                               repro_cmd=f"famfs-fuzz fuzz {target} --dax real --input {show_path(folder / 'input')}",
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
    """The guest's outcome lines (JSON lines, as a probe log: a torn last line means the guest
    died while writing it, and is dropped)."""
    from harness.tools.probelog import load
    try:
        return load(path)
    except OSError:
        return []
