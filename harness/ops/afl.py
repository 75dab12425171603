"""The external target's AFL++ lane: afl-fuzz with its forkserver on the user's program (built
with afl-cc / afl-clang-fast and a sanitizer), our famfs-aware mutator, our crash store.

`famfs-fuzz fuzz external --engine afl --cmd 'PROG ARGS {image}'`:

1. the command's `{image}` names the one device file of each execution; a command that needs
   several device files (`{images}`, `{image1}`...) is refused. AFL's inputs are compact images
   (small: afl-fuzz clips inputs at 1 MiB, a famfs log starts at 2 MiB); the mutator's
   `post_process` writes each one's device (superblock + log through its end, sparse, on tmpfs
   when there is one) to that file just before the forkserver runs the program;
2. the seeds are compact images: the program's corpus (`runs/external/<tag>/corpus`, the
   external target's inputs), the repository's `corpora/external/`, and `gen.seeds`' images;
3. afl-fuzz runs for `max_time` seconds (`-V`) and / or about `execs` executions (`-E`) with
   `gen.afl_mutator` loaded (`AFL_PYTHON_MODULE`) in `runs/external/<tag>/afl/` (the log
   `afl.log`, AFL's own `out/default/`: queue, crashes, hangs, fuzzer_stats, plot_data);
4. every crash and hang AFL saved is re-run through our external runner (`cases.external`), so
   it gets our sanitizer-parsed signature (assert, ASan/UBSan bug type, access, frames; the
   program's tag as site) and a crash folder in our `CrashStore` (crash.json with the whole
   bounded report, the reproduction rate over `repro_times` re-runs, the repro command, and in
   `extra` the command, AFL's file name and the seconds / executions AFL took to find it); an
   AFL crash our runner does not see again is counted, not recorded;
5. AFL's queue becomes the program's corpus (each entry as an external-target input: byte 0 =
   0, then the compact image), which the libFuzzer lane and the next AFL run start from.

`<tag>` is `cases.external.program_tag(cmd)`: the program's name and a short hash of its path and
arguments, so two programs never share a corpus, a log or a crash folder.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from harness import project
from harness.engine.campaign import FuzzResult
from harness.engine.crashstore import CrashStore
from harness.engine.errors import HarnessError
from harness.cases.external import External, _PLACEHOLDER, program_corpus, program_tag
from harness.engine.runner import repro_command

ROOT = project.root()
TARGET = "external"
MUTATOR = "harness.gen.afl_mutator"
MAX_SEED = 1 << 20                      # afl-fuzz refuses inputs over 1 MiB
MAX_HANGS = 5                           # AFL hangs re-run per campaign (each costs our --timeout)
_NAME = re.compile(r"(?:^|,)(\w+):([^,]*)")


@dataclass
class AflResult:
    """An AFL++ campaign: the campaign summary (as the libFuzzer lane's) and what AFL saw."""

    fuzz: FuzzResult
    tag: str
    out: Path
    first: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> seconds, execs of AFL's first file
    afl_crashes: int = 0
    afl_hangs: int = 0
    unreproduced: list[str] = field(default_factory=list)              # AFL files our runner did not see fail
    imported: int = 0                                                  # queue entries added to the corpus
    stats: dict[str, str] = field(default_factory=dict)                # fuzzer_stats


def afl_argv(cmd: str) -> list[str]:
    """The program's command line for afl-fuzz: `{image}` / `{image0}` -> `@@`; a command that
    needs several device files, or none, is refused."""
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        raise HarnessError(f"--cmd {cmd!r} does not parse: {e}") from None
    if not argv:
        raise HarnessError("--cmd is empty")
    out, primaries = [], 0
    for arg in argv:
        for m in _PLACEHOLDER.findall(arg):
            if m not in ("{image}", "{image0}"):
                raise HarnessError(f"--engine afl gives the program one input file (the primary image, as @@); "
                                   f"--cmd {cmd!r} needs several device files ({m}): use --engine atheris")
            primaries += 1
        out.append(arg.replace("{image0}", "@@").replace("{image}", "@@"))
    if primaries != 1:
        raise HarnessError(f"--engine afl needs exactly one {{image}} in --cmd (afl-fuzz's @@); "
                           f"{cmd!r} has {primaries}")
    return out


def corpus_dir(cmd: str, runs: Path = Path("runs")) -> Path:
    """The program's working corpus (both lanes)."""
    return Path(program_corpus(cmd, runs))


def _compact(data: bytes) -> bytes | None:
    """The compact image of one external-target input (None if it has none)."""
    if not data:
        return None
    if data[0] % 2 == 0:
        return data[1:]
    from harness.cases.external import case_images
    from harness.gen.decode import encode_image
    try:
        case = case_images(data)
        return encode_image(case[0][0]) if case else None
    except Exception:                                   # noqa: BLE001 - a seed that does not build
        return None


def seed_images(dirs: Iterable[Path]) -> list[bytes]:
    """Compact images to start afl-fuzz from: the inputs in `dirs` and `gen.seeds`' images."""
    from harness.gen import seeds
    found: dict[str, bytes] = {}
    for d in dirs:
        if Path(d).is_dir():
            for p in sorted(Path(d).iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    img = _compact(p.read_bytes())
                    if img:
                        found.setdefault(hashlib.sha1(img).hexdigest(), img)
    for img in seeds.compact_images():
        found.setdefault(hashlib.sha1(img).hexdigest(), img)
    return [img for img in found.values() if len(img) <= MAX_SEED]


def afl_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({"AFL_SKIP_CPUFREQ": "1", "AFL_NO_UI": "1", "AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES": "1",
                "AFL_NO_AFFINITY": "1", "AFL_FAST_CAL": "1", "AFL_DISABLE_TRIM": "1",
                "AFL_PYTHON_MODULE": MUTATOR,
                "PYTHONPATH": str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
                "ASAN_OPTIONS": "abort_on_error=1:symbolize=0:detect_leaks=0:handle_abort=1",
                "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=0"})
    env["AFL_CUSTOM_MUTATOR_ONLY"] = "1"              # see gen.afl_mutator: havoc would run a stale device
    return env


def read_stats(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines()) if k.strip()}


def _aborted(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    text = re.sub(r"\x1b[\[()][0-9;?]*[A-Za-z]?|[\x00-\x08\x0e-\x1f]", "", text)
    m = re.search(r"(?:PROGRAM ABORT|SYSTEM ERROR) : ([^\n]*)(?:\n\s*(?:Stop location|Location) : [^\n]*)?"
                  r"(?:\n\s*OS message : ([^\n]*))?", text)
    return (m.group(1).strip() + (f" ({m.group(2).strip()})" if m.group(2) else "")) if m else text[-1500:]


def fuzz_afl(cmd: str, *, max_time: float | None = 60.0, crashers: Path = Path("crashers"),
             runs: Path = Path("runs"), execs: int | None = None,
             corpus: Path | None = None, seed: int | None = None, timeout: float = 10.0,
             exec_timeout_ms: int = 1000, repro_times: int = 3, afl_args: Iterable[str] = (),
             progress: Callable[[str], None] | None = None,
             until: Callable[[AflResult], bool] | None = None) -> AflResult:
    """Run the AFL++ lane on `cmd` for `max_time` seconds and / or about `execs` executions
    (afl-fuzz's `-V` and `-E`; whichever comes first ends it); see the module docstring. AFL's
    new crashes and hangs are imported every few seconds while it runs; `until(result)` true
    ends the run early (e.g. once every expected signature is in)."""
    if max_time is None and execs is None:
        raise HarnessError("the AFL++ lane needs a budget: max_time seconds or execs executions")
    if execs is not None and execs < 1:
        raise HarnessError(f"the AFL++ lane's executions budget must be at least 1, not {execs}")
    afl_argv(cmd)                                       # a command it cannot run is refused first
    afl = shutil.which("afl-fuzz")
    if afl is None:
        raise HarnessError("afl-fuzz is not installed: apt-get install afl++ afl++-clang (./scripts/setup does)")
    tag = program_tag(cmd)
    import tempfile
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    devdir = tempfile.mkdtemp(prefix=f"famfs-afl-{tag}-", dir=shm)
    device = os.path.join(devdir, "primary.img")
    argv = [a.replace("@@", device) for a in afl_argv(cmd)]
    work = (Path(runs) / TARGET / tag / "afl").resolve()
    corpus = Path(corpus) if corpus else corpus_dir(cmd, runs)
    in_dir, out_dir, log = work / "in", work / "out", work / "afl.log"
    shutil.rmtree(in_dir, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    in_dir.mkdir(parents=True)
    corpus.mkdir(parents=True, exist_ok=True)
    images = seed_images([corpus, ROOT / "corpora" / TARGET, ROOT / "corpora" / TARGET / tag])
    for img in images:
        (in_dir / hashlib.sha1(img).hexdigest()[:16]).write_bytes(img)
    env = afl_env()
    env["FAMFS_AFL_DEVICE"] = device
    env["FAMFS_AFL_QUEUE"] = str((out_dir / "default" / "queue").resolve())
    harvest = work / "harvested"                         # the mutator's copy of every distinct crash
    shutil.rmtree(harvest, ignore_errors=True)
    (harvest / ".reports").mkdir(parents=True)
    env["FAMFS_AFL_CRASHES"] = str(harvest.resolve())
    env["ASAN_OPTIONS"] += f":log_path={harvest.resolve() / '.reports' / 'asan'}"
    env["UBSAN_OPTIONS"] += f":log_path={harvest.resolve() / '.reports' / 'ubsan'}"
    line = [afl, "-i", str(in_dir), "-o", str(out_dir), "-m", "none", "-t", str(int(exec_timeout_ms))]
    if max_time is not None:
        line += ["-V", str(max(1, int(max_time)))]
    if execs is not None:
        line += ["-E", str(execs)]
    if seed is not None:
        line += ["-s", str(seed)]
    line += [*afl_args, "--", *argv]
    if progress:
        progress(f"external (afl): {len(images)} seeds, {shlex.join(argv)}; afl-fuzz log {log}")
    start = time.monotonic()
    stats_path = out_dir / "default" / "fuzzer_stats"
    result = AflResult(FuzzResult(target=TARGET, engine="afl", logs=[str(log)]), tag, out_dir)
    store = CrashStore(Path(crashers))
    runner = External(cmd, timeout=timeout)
    seen: set[str] = set()

    def collect(settle: float = 1.0) -> None:
        import_findings(runner, cmd, out_dir / "default", store, result, seen, repro_times=repro_times,
                        progress=progress, settle=settle, harvested=work / "harvested", started=start)
    with open(log, "w") as out:
        proc = subprocess.Popen(line, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(work))
        interrupted = False
        try:
            # calibration + its own clean exit; an executions budget alone is afl-fuzz's to end
            deadline = start + max_time + 120 if max_time is not None else float("inf")
            last = polled = 0.0
            while proc.poll() is None:
                time.sleep(0.5)
                now = time.monotonic()
                if now - polled >= 3:
                    polled = now
                    collect()
                    if until is not None and until(result):
                        proc.send_signal(signal.SIGINT)
                        proc.wait(30)
                        break
                if now > deadline:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                if progress and now - last >= 10:
                    last = now
                    s = read_stats(stats_path)
                    if s:
                        progress(f"  {now - start:5.0f}s  execs {s.get('execs_done', '?')}  "
                                 f"{s.get('execs_per_sec', '?')}/s  corpus {s.get('corpus_count', '?')}  "
                                 f"crashes {s.get('saved_crashes', s.get('unique_crashes', '?'))}  "
                                 f"hangs {s.get('saved_hangs', s.get('unique_hangs', '?'))}  "
                                 f"edges {s.get('edges_found', '?')}")
        except KeyboardInterrupt:
            interrupted = True
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    try:
        stats = read_stats(stats_path)
        if proc.returncode not in (0, None) and not stats and not interrupted:
            raise HarnessError(f"afl-fuzz ended with exit {proc.returncode} before fuzzing: {_aborted(log)} "
                               f"(see {log})")
        collect(0.0)
    finally:
        runner.close()
        shutil.rmtree(runner.dir, ignore_errors=True)
        shutil.rmtree(devdir, ignore_errors=True)
    result.stats = stats
    result.fuzz.seconds = time.monotonic() - start
    result.fuzz.interrupted = interrupted
    result.fuzz.execs = int(stats.get("execs_done", "0") or 0)
    result.imported = import_queue(out_dir / "default" / "queue", corpus)
    return result


def _meta(name: str) -> dict[str, str]:
    return dict(_NAME.findall(name))


def import_findings(runner: External, cmd: str, default: Path, store: CrashStore, result: AflResult,
                    seen: set[str], *, repro_times: int, progress: Callable[[str], None] | None = None,
                    settle: float = 0.0, harvested: Path | None = None, started: float | None = None) -> None:
    """Re-run AFL's crashes and hangs (those not in `seen`, and older than `settle` seconds: AFL
    may still be writing a new one) through our runner; record what it sees in `store`."""
    from harness.gen.afl_mutator import expand
    wall0 = time.time() - (time.monotonic() - started) if started is not None else 0.0
    for kind in ("crashes", "hangs", "harvested"):
        d = harvested if kind == "harvested" else default / kind
        if d is None or not d.is_dir():
            continue
        files = sorted((p for p in d.iterdir() if p.is_file() and not p.name.startswith((".", "README"))),
                       key=lambda p: p.stat().st_mtime)
        if kind == "crashes":
            result.afl_crashes = len(files)
        elif kind == "hangs":
            result.afl_hangs = len(files)
        for p in files:
            if f"{kind}/{p.name}" in seen or (settle and time.time() - p.stat().st_mtime < settle):
                continue
            seen.add(f"{kind}/{p.name}")
            if kind == "hangs" and sum(1 for s in seen if s.startswith("hangs/")) > MAX_HANGS:
                result.unreproduced.append(f"{kind}/{p.name} (not re-run: over {MAX_HANGS} hangs)")
                continue
            data = p.read_bytes()
            image = bytes(expand(data))
            outcome = runner.run([image])
            sig = outcome.signature
            if sig is None:
                result.unreproduced.append(f"{kind}/{p.name}")
                continue
            meta = _meta(p.name)
            if kind == "harvested":                       # the mutator's count of executions, the file's time
                found_s, execs = max(0.0, p.stat().st_mtime - wall0), float(meta.get("execs", "-1") or -1)
            else:
                found_s = float(meta.get("time", "0") or 0) / 1000.0
                execs = float(meta.get("execs", "0") or 0)
            folder = store._dir(TARGET) / sig.key
            folder, new = store.save(TARGET, sig, b"\x00" + data, traceback=f"{sig.title}\n{outcome.detail}",
                                     mode="afl", repro_cmd=_repro(cmd, folder),
                                     extra={"cmd": cmd, "program": result.tag, "engine": "afl",
                                            "afl_file": f"{kind}/{p.name}", "afl_seconds": found_s,
                                            "afl_execs": execs})
            result.fuzz.findings += 1
            result.fuzz.signatures[sig.key] = sig.title
            first = result.first.get(sig.key)
            if first is None or found_s < first["seconds"] or first["execs"] < 0 <= execs:
                result.first[sig.key] = {"seconds": found_s, "execs": execs}
            if new:
                result.fuzz.new[sig.key] = sig.title
                k = sum(1 for _ in range(repro_times) if runner.run([image]).signature == sig)
                store.set_reproduced(TARGET, sig.key, k, repro_times)
                if progress:
                    progress(f"  NEW external: {sig.title}  -> {folder}")


def _repro(cmd: str, folder: Path) -> str:
    return f"FAMFS_FUZZ_EXTERNAL_CMD={shlex.quote(cmd)} {repro_command(folder)}"


def import_queue(queue: Path, corpus: Path) -> int:
    """AFL's queue into the program's corpus, each entry as an external-target input (byte 0 = 0,
    then the compact image). Returns how many were new."""
    n = 0
    if not queue.is_dir():
        return 0
    for p in sorted(queue.iterdir()):
        if not p.is_file() or not p.name.startswith("id:"):
            continue
        data = b"\x00" + p.read_bytes()
        dest = corpus / hashlib.sha1(data).hexdigest()
        if not dest.exists():
            dest.write_bytes(data)
            n += 1
    return n


def nightly_lane(cmds: Iterable[str], seconds: float, *, crashers: Path, workdir: Path,
                 say: Callable[[str], None] | None = None) -> tuple[list[FuzzResult], list[str]]:
    """The AFL++ lane inside a nightly run: `seconds` for each command (run one after the other,
    AFL's files under `workdir`). Returns the campaigns' results and, for a command that cannot
    run (afl-fuzz missing, an uninstrumented program, several device files), the reason it was
    skipped, so the nightly report says why instead of failing."""
    results: list[FuzzResult] = []
    skipped: list[str] = []
    for cmd in cmds:
        try:
            if say:
                say(f"nightly: AFL++ lane on {cmd!r} for {seconds:.0f} s")
            results.append(fuzz_afl(cmd, max_time=seconds, crashers=crashers, runs=workdir, progress=say).fuzz)
        except HarnessError as e:
            skipped.append(f"AFL++ lane ({cmd}): {e}")
            if say:
                say(f"nightly: AFL++ lane skipped: {e}")
    return results, skipped
