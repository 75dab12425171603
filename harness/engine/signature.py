"""A crash's identity: kind, what (exception type or invariant ID) and the top frames of the system under test.

Which package is under test, and which exception types are which kind of finding, the layer above
declares (`registry.system()`: `targets.SYSTEM`; for this project famfs, `harness/famfs/`); this
module knows neither. Frames are kept only when they lie in the system under test,
as file:function without line numbers, innermost first, at most five; harness frames are dropped
(as Hypothesis's get_trimmed_traceback does), so an edit elsewhere never renames a crash. The
key is a short hash of the title and names the crash folder (after syzkaller).

An oracle finding (`InvariantViolation`) is raised in the harness, so its traceback has no famfs
frames; it names instead where in famfs the wrong value came from (`site`: the operation and the
famfs path, e.g. `read@pull-devt/interleave`), which the signature keeps, so two bugs breaking one
invariant get two folders. An internal error (an exception that escaped a famfs handler, reported
through the probe, maybe from another process) is kind `internal-error`, its signature the
exception type plus the famfs frames parsed out of the reported traceback text.
"""
from __future__ import annotations

import enum
import hashlib
import os
import re
import traceback
from dataclasses import dataclass
from typing import Any

from harness import project
from harness.engine.registry import system

_ROOT = str(project.root())
MAX_FRAMES = 5


class Kind(enum.StrEnum):
    """What sort of crash a signature names: every kind something in the harness makes. The values
    are in crash folders' JSON and in titles (so in keys): never rename one."""

    EXCEPTION = "exception"              # an exception escaped famfs
    INVARIANT = "invariant"              # an oracle finding (InvariantViolation), `what` its ID
    INTERNAL_ERROR = "internal-error"    # an exception a famfs handler reported through the probe
    DAEMON_DEATH = "daemon-death"        # the daemon process died under a case
    TIMEOUT = "timeout"                  # a case ran past its time, inside famfs
    HARNESS_HANG = "harness-hang"        # a case ran past its time, outside famfs
    RSS = "rss"                          # the case process's memory went over the limit
    GUEST_DEATH = "guest-death"          # the real-DAX guest died (panic, OOM) inside a case
    SANITIZER = "sanitizer"              # an external program's ASan / UBSan / LSan report
    ASSERT = "assert"                    # an external program's failed assert
    SIGNAL = "signal"                    # an external program killed by a signal
    EXIT = "exit"                        # an external program's exit status other than accept / refuse
    DIFFERENTIAL = "differential"        # an external program's verdict differs from ours


@dataclass(frozen=True, slots=True)
class Signature:
    """Frozen crash identity; `.title` reads as a sentence, `.key` names its folder."""

    kind: Kind
    what: str
    frames: tuple[str, ...] = ()
    site: str = ""                      # an oracle finding: 'op@famfs path' the wrong value came from

    @classmethod
    def of(cls, kind: Kind, what: str, frames: tuple[str, ...] | list[str] = (), site: str = "") -> "Signature":
        return cls(Kind(kind), what, tuple(frames)[:MAX_FRAMES], site)

    @classmethod
    def from_exception(cls, exc: BaseException) -> "Signature":
        carried = getattr(exc, "signature", None)
        if isinstance(carried, Signature):              # a finding that names itself (external targets)
            return carried
        kind = Kind(system().finding_kinds.get(type(exc).__name__, Kind.EXCEPTION))
        internal = getattr(exc, "error", None)
        if kind == Kind.INTERNAL_ERROR and internal is not None:
            return cls.of(Kind.INTERNAL_ERROR, internal.type, frames_of_text(internal.traceback), internal.where)
        invariant = getattr(exc, "invariant", None)
        if kind == Kind.INTERNAL_ERROR or (kind == Kind.INVARIANT and invariant is None):
            kind = Kind.EXCEPTION                        # the type, but not carrying what its kind needs
        is_violation = kind == Kind.INVARIANT
        what = str(getattr(invariant, "value", invariant)) if is_violation else type(exc).__name__
        site = str(getattr(exc, "where", "") or "") if is_violation else ""
        return cls.of(kind, what, sut_frames(exc.__traceback__), site)

    @property
    def title(self) -> str:
        where = " < ".join(self.frames)
        return (f"{self.kind} {self.what}" + (f" at {self.site}" if self.site else "")
                + (f" in {where}" if where else ""))

    @property
    def key(self) -> str:
        return hashlib.sha256(self.title.encode()).hexdigest()[:12]

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value, "what": self.what, "frames": list(self.frames)}
        if self.site:
            d["site"] = self.site
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Signature":
        return cls.of(Kind(d["kind"]), d["what"], d.get("frames", ()), d.get("site", ""))


def sut_frames(tb: Any) -> list[str]:
    """'harness/famfs/x.py:function' for each traceback frame inside the system under test,
    innermost first."""
    return frames_of_stack(traceback.extract_tb(tb))


def frames_of_stack(stack: list[traceback.FrameSummary] | traceback.StackSummary) -> list[str]:
    """The system-under-test frames of a stack given outermost first (a traceback, or a stack
    caught at a timeout), innermost first, at most MAX_FRAMES."""
    prefix = system().frames_prefix
    out: list[str] = []
    for frame in reversed(stack) if prefix else ():
        name = repo_frame(frame)
        if name.startswith(prefix):
            out.append(name)
        if len(out) >= MAX_FRAMES:
            break
    return out


def in_repository(filename: str) -> bool:
    """Whether `filename` is this repository's code (not the standard library, not the venv)."""
    rel = os.path.relpath(os.path.abspath(filename), _ROOT)
    return not rel.startswith("..") and not rel.startswith(".venv") and "site-packages" not in rel


def repo_frame(frame: traceback.FrameSummary) -> str:
    """'path/in/repo.py:function' of a frame (no line number)."""
    rel = os.path.relpath(os.path.abspath(frame.filename), _ROOT)
    return f"{rel.replace(os.sep, '/')}:{frame.name}"


_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+, in (\S+)', re.M)


def frames_of_text(text: str) -> list[str]:
    """System-under-test frames of a formatted traceback (another process's), innermost first,
    as 'harness/famfs/x.py:function': the part of the path from the package's folder on, so the
    checkout's location does not matter."""
    prefix = system().frames_prefix
    out: list[str] = []
    for path, func in reversed(_FRAME.findall(text)) if prefix else ():
        norm = path.replace(os.sep, "/")
        at = norm.rfind("/" + prefix)
        if at < 0 and not norm.startswith(prefix):
            continue
        out.append(f"{norm[at + 1:] if at >= 0 else norm}:{func}")
        if len(out) >= MAX_FRAMES:
            break
    return out


class Finding(Exception):
    """Base of the exceptions raised for a finding where an engine must see one (a standalone
    fuzzer's libFuzzer, a Hypothesis campaign's shrinker): one subclass per signature."""


_CLASSES: dict[str, type[Finding]] = {}


def finding_class(signature: Signature) -> type[Finding]:
    """The exception type for one signature: a valid identifier naming the system, kind, what and
    key, so services that tell crashes apart by exception type keep two bugs apart."""
    prefix = system().package.rpartition(".")[2] or "sut"
    name = re.sub(r"[^0-9A-Za-z_]", "_", f"{prefix}_{signature.kind}_{signature.what}_{signature.key}")
    cls = _CLASSES.get(name)
    if cls is None:
        cls = _CLASSES[name] = type(name, (Finding,), {"__module__": __name__})
    return cls
