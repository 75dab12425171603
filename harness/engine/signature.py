"""A crash's identity: kind, what (exception type or invariant ID) and the top famfs frames.

Frames are kept only when they lie in this repository's `harness/famfs/` (the system under test),
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

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_FAMFS = os.path.join("harness", "famfs") + os.sep
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
        internal = getattr(exc, "error", None)
        if type(exc).__name__ == "InternalFinding" and internal is not None:
            return cls.of(Kind.INTERNAL_ERROR, internal.type, frames_of_text(internal.traceback), internal.where)
        invariant = getattr(exc, "invariant", None)
        is_violation = type(exc).__name__ == "InvariantViolation" and invariant is not None
        kind = Kind.INVARIANT if is_violation else (Kind.DAEMON_DEATH if type(exc).__name__ == "DaemonDied"
                                                    else Kind.EXCEPTION)
        what = str(getattr(invariant, "value", invariant)) if is_violation else type(exc).__name__
        site = str(getattr(exc, "where", "") or "") if is_violation else ""
        return cls.of(kind, what, famfs_frames(exc.__traceback__), site)

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


def famfs_frames(tb: Any) -> list[str]:
    """'harness/famfs/x.py:function' for each traceback frame inside famfs, innermost first."""
    return frames_of_stack(traceback.extract_tb(tb))


def frames_of_stack(stack: list[traceback.FrameSummary] | traceback.StackSummary) -> list[str]:
    """The famfs frames of a stack given outermost first (a traceback, or a stack caught at a
    timeout), innermost first, at most MAX_FRAMES."""
    out: list[str] = []
    for frame in reversed(stack):
        name = repo_frame(frame)
        if name.startswith(_FAMFS.replace(os.sep, "/")):
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
    """famfs frames of a formatted traceback (another process's), innermost first, as
    'harness/famfs/x.py:function': the part of the path from 'harness/famfs/' on, so the
    checkout's location does not matter."""
    out: list[str] = []
    for path, func in reversed(_FRAME.findall(text)):
        norm = path.replace(os.sep, "/")
        at = norm.rfind("/" + _FAMFS.replace(os.sep, "/"))
        if at < 0 and not norm.startswith(_FAMFS.replace(os.sep, "/")):
            continue
        out.append(f"{norm[at + 1:] if at >= 0 else norm}:{func}")
        if len(out) >= MAX_FRAMES:
            break
    return out
