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
so distinct bugs get distinct signatures; a glibc `file:line: function: Assertion '...' failed`
line is an `assert` finding named by its function and expression (the libc frames of ASan's abort
report are dropped); a plain crash is named by its signal. A finding keeps the whole sanitizer
report (bounded: its head, where the access stack is, and its tail).

Every signature carries the program's tag (`program_tag`: its name and a short hash of its
resolved path and arguments) as its site, so two programs never share a crash folder; the CLI
keys the corpus and the logs by the same tag. Images are written sparse (zero runs are holes)
on tmpfs when the machine has one, so a 10 MiB device costs the bytes of its superblock and log.
"""
from __future__ import annotations

import hashlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

from harness.engine.registry import at_exit
from harness.engine.signature import Kind, Signature
from harness.gen.spec import BufferPool

_ASAN = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|MemorySanitizer|ThreadSanitizer): ([\w-]+)")
_SUMMARY = re.compile(r"SUMMARY: (AddressSanitizer|LeakSanitizer|MemorySanitizer|ThreadSanitizer): ([\w-]+)")
_ASSERT = re.compile(r"^(?:[^\n:]*: )?([^\n:]+):(\d+): ([^\n:]+?): Assertion [`'](.*)' failed\.?$", re.M)
_START = re.compile(r"^.*(?:==\d+==ERROR: |runtime error: |Assertion [`'].*' failed|==\d+==WARNING: )", re.M)
REPORT_LIMIT = 64 * 1024                # bytes of a sanitizer report kept in a finding (head + tail)
_UBSAN = re.compile(r"runtime error: ([^\n]+)")
_ACCESS = re.compile(r"\b(READ|WRITE) of size (\d+)")
_FRAME = re.compile(r"#\d+ 0x[0-9a-f]+ in (\S+)(?: (\S+?))?(?::\d+)*(?:\s|$)")
_RUNTIME = ("__asan", "__interceptor", "__sanitizer", "__ubsan", "__lsan", "malloc", "calloc", "realloc",
            "memcpy", "memmove", "memset", "strcpy", "strlen", "__libc_start", "_start", "operator new",
            "raise", "abort", "gsignal", "__assert_fail", "__pthread_kill", "pthread_kill", "__GI_", "__restore_rt")
_LIBC = ("libc.so", "libc-", "nptl/", "sysdeps/", "stdlib/", "assert/", "signal/")


@dataclass(frozen=True, slots=True)
class SanitizerReport:
    tool: str
    bug: str
    access: str
    frames: tuple[str, ...]

    def signature(self) -> Signature:
        what = f"{self.tool}:{self.bug}" + (f" {self.access}" if self.access else "")
        return Signature.of(Kind.SANITIZER, what, self.frames[:3])


def parse_sanitizer(text: str) -> SanitizerReport | None:
    """The first sanitizer report in `text` (stderr of the program), or None. The bug type comes
    from the report's SUMMARY line when it has one (`requested allocation size ... exceeds` is an
    `allocation-size-too-big`, not a "requested")."""
    m = _ASAN.search(text)
    if m:
        tool, bug = m.group(1), m.group(2)
        rest = text[m.end():]
        summary = _SUMMARY.search(rest)
        if summary and summary.group(1) == tool:
            bug = summary.group(2)
    else:
        u = _UBSAN.search(text)
        if not u:
            return None
        tool = "UndefinedBehaviorSanitizer"
        bug = re.sub(r"[^a-z]+", "-", u.group(1).split(" '")[0].lower()).strip("-")[:40]
        rest = text[u.end():]
    access = _ACCESS.search(rest)
    first_stack = rest.split("\n\n", 1)[0] if _FRAME.search(rest.split("\n\n", 1)[0]) else rest[:4000]
    frames = _frames(first_stack)
    return SanitizerReport(tool, bug, f"{access.group(1)} {access.group(2)}" if access else "", tuple(frames))


def _frames(stack: str) -> list[str]:
    """file:function of a stack's frames outside the sanitizer runtime and libc, innermost first."""
    frames: list[str] = []
    for f in _FRAME.finditer(stack):
        raw = f.group(2) or ""
        fn, where = f.group(1), os.path.basename(raw)
        if fn.startswith(_RUNTIME) or "libasan" in raw or "libubsan" in raw or any(s in raw for s in _LIBC):
            continue
        frames.append(f"{where.split(':')[0]}:{fn}" if where else fn)
        if len(frames) >= 5:
            break
    return frames


@dataclass(frozen=True, slots=True)
class AssertReport:
    """A failed C assert(): where (file basename, function) and the expression."""

    file: str
    function: str
    expression: str
    frames: tuple[str, ...]

    def signature(self) -> Signature:
        here = f"{self.file}:{self.function}"
        return Signature.of(Kind.ASSERT, f"Assertion `{self.expression}' failed",
                            (here,) + tuple(f for f in self.frames if f != here))


def parse_assert(text: str) -> AssertReport | None:
    """The first glibc assertion failure in `text` (`prog: file:line: function: Assertion 'e'
    failed.`), with the frames of a sanitizer's abort report past libc's, or None."""
    m = _ASSERT.search(text)
    if not m:
        return None
    fn = m.group(3).strip()
    fn = re.sub(r"\(.*\)$", "", fn).split()[-1] if fn else fn       # C++: 'int f(int)' -> 'f'
    return AssertReport(os.path.basename(m.group(1)), fn, m.group(4), tuple(_frames(text[m.end():])[:4]))


def report_text(stderr: str, limit: int = REPORT_LIMIT) -> str:
    """The part of a program's stderr a developer reads: from the first report line (sanitizer
    ERROR, runtime error, failed assert) on, bounded to `limit` characters, keeping the head (the
    access stack) and the tail (SUMMARY). Without a report, the last 8 KiB."""
    m = _START.search(stderr)
    text = stderr[m.start():] if m else stderr[-8192:]
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    return text[:head] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-(limit - head):]


def program_tag(cmd: str) -> str:
    """`name-hash` of a command: the program's base name and a short hash of its resolved path and
    its arguments (placeholders included), so the crash keys, the corpus and the logs of two
    programs (or of one program run two ways) never mix."""
    try:
        argv = shlex.split(cmd)
    except ValueError:
        argv = cmd.split()
    if not argv:
        return "none"
    prog = shutil.which(argv[0]) or argv[0]
    prog = os.path.realpath(prog)
    h = hashlib.sha256("\0".join([prog, *argv[1:]]).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(prog))[:32] or "program"
    return f"{name}-{h}"


@dataclass
class ExternalOutcome:
    """What the program did with one case."""

    accepted: bool
    signature: Signature | None = None
    files: list[str] = field(default_factory=list)
    detail: str = ""


def program_corpus(cmd: str, runs: str | os.PathLike[str] = "runs") -> str:
    """The program's working corpus (both lanes): runs/external/<tag>/corpus."""
    return os.path.join(runs, "external", program_tag(cmd), "corpus")


def seed_corpus(corpus: str | os.PathLike[str]) -> int:
    """Write the external target's seeds (`gen.seeds`, wherever the command runs from) into an
    empty corpus directory; returns how many were written."""
    from harness.gen import seeds
    os.makedirs(corpus, exist_ok=True)
    if any(not n.startswith(".") for n in os.listdir(corpus)):
        return 0
    n = 0
    for data in seeds.external_inputs():
        with open(os.path.join(corpus, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
        n += 1
    return n


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


_PLACEHOLDER = re.compile(r"\{image\d*\}|\{images\}")


def batch_argv(cmd: str) -> list[str]:
    """The batch process's command line: the program, `--batch`, then every argument of `cmd`
    that names no image (`prog fsck {image} heap` -> `prog --batch fsck heap`)."""
    argv = shlex.split(cmd)
    return argv[:1] + ["--batch"] + [a for a in argv[1:] if not _PLACEHOLDER.search(a)]


def _tmpfs() -> str | None:
    """A tmpfs directory for the case images (/dev/shm), if there is a writable one."""
    d = "/dev/shm"
    return d if os.path.isdir(d) and os.access(d, os.W_OK) else None


HOLE = 64 * 1024


def write_sparse(path: str, data: bytes) -> None:
    """Write `data` to `path` leaving every all-zero 64 KiB block a hole: the file reads the same
    and has the same size, but a device image costs the blocks of its superblock and log only."""
    zero = bytes(HOLE)
    view = memoryview(data)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for at in range(0, len(data), HOLE):
            block = view[at:at + HOLE]
            if block != zero[:len(block)]:
                os.pwrite(fd, block, at)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:symbolize=1:exitcode=86")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
    return env


def classify(returncode: int | None, stderr: str, hang: bool, name: str, tag: str = "") -> Signature | None:
    """The finding of one run (None: the program accepted or refused cleanly). An assert comes
    before a sanitizer report: ASan's report of the abort only names libc's frames."""
    sig = _classify(returncode, stderr, hang, name)
    return Signature.of(sig.kind, sig.what, sig.frames, tag) if sig is not None and tag else sig


def _classify(returncode: int | None, stderr: str, hang: bool, name: str) -> Signature | None:
    if hang:
        return Signature.of(Kind.TIMEOUT, name)
    failed = parse_assert(stderr)
    if failed is not None:
        return failed.signature()
    report = parse_sanitizer(stderr)
    if report is not None:
        return report.signature()
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return Signature.of(Kind.SIGNAL, sig)
    if returncode not in (0, 1):
        return Signature.of(Kind.EXIT, f"status {returncode}")
    return None


class External:
    """Runs the external command on case images (one process per case, or a batch process)."""

    def __init__(self, cmd: str, *, timeout: float = 10.0, batch: bool = False, workdir: str | None = None):
        self.cmd = cmd
        self.timeout = timeout
        self.batch = batch
        self.tag = program_tag(cmd)
        self.dir = workdir or tempfile.mkdtemp(prefix=f"famfs-external-{self.tag}-", dir=_tmpfs())
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending = b""
        self.stderr_path = os.path.join(self.dir, "stderr")

    def write(self, images: Sequence[bytes]) -> list[str]:
        paths = []
        for k, data in enumerate(images):
            p = os.path.join(self.dir, f"image{k}.img")
            write_sparse(p, data)
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
            return ExternalOutcome(False, classify(None, "", True, "external", self.tag), detail="hang")
        sig = classify(p.returncode, p.stderr, False, "external", self.tag)
        files = [ln[5:] for ln in p.stdout.splitlines() if ln.startswith("file ")]
        return ExternalOutcome(p.returncode == 0 and sig is None, sig, files, report_text(p.stderr) if sig else "")

    def _batch(self, paths: list[str]) -> ExternalOutcome:
        if self.proc is None or self.proc.poll() is not None:
            self.err = open(self.stderr_path, "w+b")
            self.proc = subprocess.Popen(batch_argv(self.cmd), stdin=subprocess.PIPE,
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
        return ExternalOutcome(False, classify(rc, text, hang, "external", self.tag), files, report_text(text))

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
    """At the end of a run (an engine's exit hook, registered below): stop every batch process and
    remove the image directories the runners made."""
    import shutil
    for runner in list(_RUNNERS.values()):
        runner.close()
        shutil.rmtree(runner.dir, ignore_errors=True)
    _RUNNERS.clear()


at_exit(close_all)


class ExternalFinding(Exception):
    """Raised for a case the external program crashed on (or disagreed with us about)."""

    def __init__(self, signature: Signature, detail: str):
        super().__init__(f"{signature.title}\n{detail}")
        self.signature = signature


_RUNNERS: dict[tuple[str, float, bool], External] = {}
_POOL = BufferPool()


def escapes(path: str) -> bool:
    """Whether a path the program reported lies outside the namespace (NS-CONTAINED): empty,
    absolute, or with a `..` component."""
    return not path or path.startswith("/") or ".." in path.split("/")


def differential(outcome: ExternalOutcome, image: bytes, size: int, tag: str = "") -> ExternalFinding | None:
    """The oracle's verdict of the image (the reference model, as for every in-process case)
    against the program's verdict and file set. A reported path that escapes the namespace is an
    NS-CONTAINED finding whatever the program's verdict; verdicts that differ name the model's
    rejection's invariant; agreeing verdicts hold the program's file set against the model's
    namespace (`oracle.case.check_listing`)."""
    from harness.oracle.case import check_listing
    from harness.oracle.invariants import InvariantViolation
    from harness.oracle.model import verdict
    bad = [f for f in outcome.files if escapes(f)]
    if bad:
        return ExternalFinding(Signature.of(Kind.INVARIANT, "NS-CONTAINED", ("program-file-set",), tag),
                               f"the program reported paths outside the namespace: {bad[:5]}")
    expected = verdict(image, size)
    why = expected.image_error or (expected.rejections[0][1] if expected.rejections else "")
    ours = not why and expected.stopped_at is None
    if ours != outcome.accepted:
        what = "ours-accept theirs-reject" if ours else f"ours-reject({why or '?'}) theirs-accept"
        return ExternalFinding(Signature.of(Kind.DIFFERENTIAL, what, (), tag),
                               f"verdicts differ; ours: {why or 'accept'}")
    if outcome.files:
        try:
            check_listing(expected, {f: {"type": "f"} for f in outcome.files}, "program", site="external",
                          files_only=True)
        except InvariantViolation as v:
            return ExternalFinding(Signature.of(Kind.DIFFERENTIAL, "file-sets", (), tag), v.message)
    return None


def case_images(data: bytes, ndev: int = 1) -> tuple[list[bytes], int] | None:
    """The device images of one external-target input and the primary's real size, or None.
    byte 0 even: the rest is a compact image, written as the program's file by
    `gen.afl_mutator.expand` (superblock + log through its end, or the bytes themselves when the
    superblock places no log: the AFL lane runs those too); odd: a structured spec + corruption."""
    import random

    from harness.gen import decode
    from harness.gen.afl_mutator import expand
    from harness.gen.corrupt import corrupt
    from harness.gen.spec import build
    if not data:
        return None
    if data[0] % 2 == 0:
        img = decode.log_image(data[1:])
        return ([bytes(img.device)], img.size) if img is not None else ([bytes(expand(data[1:]))], len(data) - 1)
    c = decode.Choices(data[1:])
    built = build(decode.spec(c), _POOL, data="stamp")
    try:
        if c.int(0, 3):
            corrupt(built.primary, random.Random(decode.corruption_seed(c)), None)
        images = ([bytes(built.primary[:decode.head_end(built.primary)])]
                  + [bytes(d[:4096]) for d in built.devices[1:ndev]])
        return images, len(built.primary)
    finally:
        _POOL.give_back()


def runner_for(cmd: str, timeout: float, batch: bool) -> External:
    key = (cmd, timeout, batch)
    return _RUNNERS.get(key) or _RUNNERS.setdefault(key, External(cmd, timeout=timeout, batch=batch))


def external_case(data: bytes) -> int:
    """One case for the external command named by FAMFS_FUZZ_EXTERNAL_CMD (`case_images` says how
    the input becomes images); the images go to the program; a crash is an ExternalFinding. With
    FAMFS_FUZZ_DIFFERENTIAL=1 our replay's verdict and file set must match the program's."""
    cmd = os.environ.get("FAMFS_FUZZ_EXTERNAL_CMD")
    if not cmd:
        from harness.engine.errors import HarnessError
        raise HarnessError("the external target needs --cmd (FAMFS_FUZZ_EXTERNAL_CMD)")
    timeout = float(os.environ.get("FAMFS_FUZZ_EXTERNAL_TIMEOUT", "10"))
    batch = os.environ.get("FAMFS_FUZZ_EXTERNAL_BATCH") == "1"
    ndev = int(os.environ.get("FAMFS_FUZZ_EXTERNAL_DEVICES", "1"))
    runner = runner_for(cmd, timeout, batch)
    case = case_images(data, ndev)
    if case is None:
        return 0
    images, size = case
    outcome = runner.run(images)
    if outcome.signature is not None:
        raise ExternalFinding(outcome.signature, outcome.detail)
    if os.environ.get("FAMFS_FUZZ_DIFFERENTIAL") == "1":
        finding = differential(outcome, images[0], size, runner.tag)
        if finding is not None:
            raise finding
    return 0
