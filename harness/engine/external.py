"""External targets: another famfs implementation driven through image files, sanitizer-aware.

The command contract (README "External targets"): the harness writes each case's device images
to files and runs `CMD` with `{image}` (the primary), `{image0}`..`{imageN}` or `{images}`
replaced by their paths. The program's exit status says what it made of them: 0 accepted, 1
refused; anything else, a signal, a hang past the timeout or a sanitizer report on stderr is a
crash. Lines `file PATH` on stdout list the files it found (for the differential mode). With
`--batch`, the program is started once, reads one image path per line on stdin and answers one
line each (`ok` or `reject`), like a fork server; if it dies, the image in flight is the culprit
and a new process is started.

Sanitizer reports (AddressSanitizer, UndefinedBehaviorSanitizer, LeakSanitizer) are parsed into
the bug type, the access (READ/WRITE of size N) and the top frames outside the sanitizer runtime,
so distinct bugs get distinct signatures; a plain crash is named by its signal.
"""
from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

from harness.engine.signature import Signature
from harness.gen.spec import BufferPool

_ASAN = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|MemorySanitizer|ThreadSanitizer): ([\w-]+)")
_UBSAN = re.compile(r"runtime error: ([^\n]+)")
_ACCESS = re.compile(r"\b(READ|WRITE) of size (\d+)")
_FRAME = re.compile(r"#\d+ 0x[0-9a-f]+ in (\S+)(?: (\S+?))?(?::\d+)*(?:\s|$)")
_RUNTIME = ("__asan", "__interceptor", "__sanitizer", "__ubsan", "__lsan", "malloc", "calloc", "realloc",
            "memcpy", "memmove", "memset", "strcpy", "strlen", "__libc_start", "_start", "operator new")


@dataclass(frozen=True, slots=True)
class SanitizerReport:
    tool: str
    bug: str
    access: str
    frames: tuple[str, ...]

    def signature(self) -> Signature:
        what = f"{self.tool}:{self.bug}" + (f" {self.access}" if self.access else "")
        return Signature.of("sanitizer", what, self.frames[:3])


def parse_sanitizer(text: str) -> SanitizerReport | None:
    """The first sanitizer report in `text` (stderr of the program), or None."""
    m = _ASAN.search(text)
    if m:
        tool, bug = m.group(1), m.group(2)
        rest = text[m.end():]
    else:
        u = _UBSAN.search(text)
        if not u:
            return None
        tool, bug = "UndefinedBehaviorSanitizer", re.sub(r"[^a-z]+", "-", u.group(1).split(" '")[0].lower()).strip("-")[:40]
        rest = text[u.end():]
    access = _ACCESS.search(rest)
    first_stack = rest.split("\n\n", 1)[0] if _FRAME.search(rest.split("\n\n", 1)[0]) else rest[:4000]
    frames = []
    for f in _FRAME.finditer(first_stack):
        fn, where = f.group(1), os.path.basename(f.group(2) or "")
        if fn.startswith(_RUNTIME) or "libasan" in where or "libubsan" in where:
            continue
        frames.append(f"{where.split(':')[0]}:{fn}" if where else fn)
        if len(frames) >= 5:
            break
    return SanitizerReport(tool, bug, f"{access.group(1)} {access.group(2)}" if access else "", tuple(frames))


@dataclass
class ExternalOutcome:
    """What the program did with one case."""

    accepted: bool
    signature: Signature | None = None
    files: list[str] = field(default_factory=list)
    detail: str = ""


def _fill(cmd: str, paths: Sequence[str]) -> list[str]:
    out = []
    for arg in shlex.split(cmd):
        if arg == "{images}":
            out += list(paths)
            continue
        arg = arg.replace("{image}", paths[0])
        for k, p in enumerate(paths):
            arg = arg.replace(f"{{image{k}}}", p)
        out.append(arg)
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:symbolize=1:exitcode=86")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
    return env


def classify(returncode: int | None, stderr: str, hang: bool, name: str) -> Signature | None:
    if hang:
        return Signature.of("timeout", name)
    report = parse_sanitizer(stderr)
    if report is not None:
        return report.signature()
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return Signature.of("signal", sig)
    if returncode not in (0, 1):
        return Signature.of("exit", f"status {returncode}")
    return None


class External:
    """Runs the external command on case images (one process per case, or a batch process)."""

    def __init__(self, cmd: str, *, timeout: float = 10.0, batch: bool = False, workdir: str | None = None):
        self.cmd = cmd
        self.timeout = timeout
        self.batch = batch
        self.dir = workdir or tempfile.mkdtemp(prefix="famfs-external-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending = b""
        self.stderr_path = os.path.join(self.dir, "stderr")

    def write(self, images: Sequence[bytes]) -> list[str]:
        paths = []
        for k, data in enumerate(images):
            p = os.path.join(self.dir, f"image{k}.img")
            with open(p, "wb") as f:
                f.write(data)
            paths.append(p)
        return paths

    def run(self, images: Sequence[bytes]) -> ExternalOutcome:
        paths = self.write(images)
        return self._batch(paths) if self.batch else self._once(paths)

    def _once(self, paths: list[str]) -> ExternalOutcome:
        try:
            p = subprocess.run(_fill(self.cmd, paths), capture_output=True, text=True, timeout=self.timeout,
                               env=_env(), errors="replace")
        except subprocess.TimeoutExpired:
            return ExternalOutcome(False, classify(None, "", True, "external"), detail="hang")
        sig = classify(p.returncode, p.stderr, False, "external")
        files = [ln[5:] for ln in p.stdout.splitlines() if ln.startswith("file ")]
        return ExternalOutcome(p.returncode == 0 and sig is None, sig, files, p.stderr[-2000:] if sig else "")

    def _batch(self, paths: list[str]) -> ExternalOutcome:
        if self.proc is None or self.proc.poll() is not None:
            self.err = open(self.stderr_path, "w+b")
            self.proc = subprocess.Popen(_fill(self.cmd, paths)[:1] + ["--batch"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.err, env=_env(), bufsize=0)
            self.pending = b""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(paths[0].encode() + b"\n")
        except BrokenPipeError:
            pass
        files: list[str] = []
        hang = False
        while True:
            line = self._line()
            if line is None:
                hang = True
                break
            if line.startswith("file "):
                files.append(line[5:])
                continue
            if line in ("ok", "reject"):
                return ExternalOutcome(line == "ok", files=files)
            break                                       # EOF or garbage: the process died or lied
        if hang or self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait()
        self.err.seek(0)
        text = self.err.read().decode(errors="replace")
        self.proc = None
        return ExternalOutcome(False, classify(rc, text, hang, "external"), detail=text[-2000:])

    def _line(self) -> str | None:
        """The batch process's next stdout line ("" at EOF), None if none came within the timeout.
        Lines are cut from our own buffer: a buffered reader would hold a second line that select()
        on the pipe can no longer see, and a case would hang for the whole timeout."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode(errors="replace").strip()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def close_all() -> None:
    """At the end of a run (atheris_main's exit hook): stop every batch process and remove the
    image directories the runners made."""
    import shutil
    for runner in list(_RUNNERS.values()):
        runner.close()
        shutil.rmtree(runner.dir, ignore_errors=True)
    _RUNNERS.clear()


class ExternalFinding(Exception):
    """Raised for a case the external program crashed on (or disagreed with us about)."""

    def __init__(self, signature: Signature, detail: str):
        super().__init__(f"{signature.title}\n{detail}")
        self.signature = signature


_RUNNERS: dict[tuple[str, float, bool], External] = {}
_POOL = BufferPool()


def external_case(data: bytes) -> int:
    """One case for the external command named by FAMFS_FUZZ_EXTERNAL_CMD: byte 0 even -> the rest
    is a raw compact image (as log_replay), odd -> a structured spec + corruption; the images go to
    the program; a crash is an ExternalFinding. With FAMFS_FUZZ_DIFFERENTIAL=1 our replay's verdict
    and file set must match the program's."""
    import random

    from harness.famfs.errors import FamfsError
    from harness.famfs.replay import replay
    from harness.gen import decode
    from harness.gen.corrupt import corrupt
    from harness.gen.spec import build
    cmd = os.environ.get("FAMFS_FUZZ_EXTERNAL_CMD")
    if not cmd:
        from harness.engine.crashstore import HarnessError
        raise HarnessError("the external target needs --cmd (FAMFS_FUZZ_EXTERNAL_CMD)")
    timeout = float(os.environ.get("FAMFS_FUZZ_EXTERNAL_TIMEOUT", "10"))
    batch = os.environ.get("FAMFS_FUZZ_EXTERNAL_BATCH") == "1"
    ndev = int(os.environ.get("FAMFS_FUZZ_EXTERNAL_DEVICES", "1"))
    key = (cmd, timeout, batch)
    runner = _RUNNERS.get(key) or _RUNNERS.setdefault(key, External(cmd, timeout=timeout, batch=batch))
    if not data:
        return 0
    if data[0] % 2 == 0:
        image = decode.log_image(data[1:])
        if image is None:
            return 0
        images, size = [bytes(image.device)], image.size
    else:
        c = decode.Choices(data[1:])
        built = build(decode.spec(c), _POOL, data="stamp")
        try:
            if c.int(0, 3):
                corrupt(built.primary, random.Random(decode.corruption_seed(c)), None)
            images = [bytes(built.primary[:decode.head_end(built.primary)])] + [bytes(d[:4096]) for d in built.devices[1:ndev]]
            size = len(built.primary)
        finally:
            _POOL.give_back()
    outcome = runner.run(images)
    if outcome.signature is not None:
        raise ExternalFinding(outcome.signature, outcome.detail)
    if os.environ.get("FAMFS_FUZZ_DIFFERENTIAL") == "1":
        try:
            r = replay(images[0], device_size=size)
            ours, files = r.clean and r.stopped_at is None, sorted(r.namespace.files)
        except FamfsError:
            ours, files = False, []
        if ours != outcome.accepted:
            what = "ours-accept theirs-reject" if ours else "ours-reject theirs-accept"
            raise ExternalFinding(Signature.of("differential", what), "verdicts differ")
        if ours and outcome.files and sorted(outcome.files) != files:
            raise ExternalFinding(Signature.of("differential", "file-sets"), f"{outcome.files} != {files}")
    return 0
