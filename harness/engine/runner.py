"""The case runner: one input through one target, with a timeout and an RSS guard; findings recorded.

`CaseRunner.run_one` is what every engine calls per input (Atheris's TestOneInput, the Hypothesis
test body, repro, regress, minimize). It never raises for a finding: an `InvariantViolation`, any
exception escaping the target, a case over its time limit (`CaseTimeout`) or an RSS blow-up
becomes a `Signature` and, when a crash store is attached, a crash folder. A `HarnessError` is a
bug in our tooling and is re-raised, never filed as a famfs crasher. A case that hangs is filed
with the stack it was stuck in: a hang inside famfs is a `timeout` finding named by famfs's frames,
a hang in the harness is a `harness-hang` record (our bug, kept apart from famfs's).

A target's `one_input` returns the lookups its case checked: an int (the total) or the
oracle's `lookups.Counts` (ok / justified / unjustified); `CaseRunner` is the one place that adds
them up into `Stats`. An internal error famfs reported (a handler exception) is a finding of kind
`internal-error`, counted apart in `internal_errors` / `internal_signatures`.
"""
from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from harness.engine.crashstore import CrashStore
from harness.engine.errors import CaseTimeout, HarnessError
from harness.engine.registry import Target, system
from harness.engine.signature import Kind, Signature, frames_of_stack, in_repository, repo_frame


@dataclass
class Stats:
    """Counters of one run of one target."""

    target: str
    execs: int = 0
    lookups: int = 0                      # lookups checked: ok + justified + unjustified
    lookups_ok: int = 0
    lookups_justified: int = 0
    lookups_unjustified: int = 0
    internal_errors: int = 0
    internal_signatures: dict[str, str] = field(default_factory=dict)   # key -> title
    findings: int = 0
    signatures: dict[str, str] = field(default_factory=dict)     # key -> title, this run
    new: dict[str, str] = field(default_factory=dict)            # key -> title, first seen now
    started: float = field(default_factory=time.monotonic)

    def add(self, counts: Any) -> None:
        """Add one case's lookup counts: an int (all counted as ok: the target judges no
        failures) or a `Counts` value (ok / justified / unjustified)."""
        if not hasattr(counts, "justified"):       # a plain int: the target judged only successes
            self.lookups += counts
            self.lookups_ok += counts
            return
        self.lookups += int(counts)
        self.lookups_ok += counts.ok
        self.lookups_justified += counts.justified
        self.lookups_unjustified += counts.unjustified

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        s = max(self.seconds, 1e-9)
        return {"target": self.target, "execs": self.execs, "seconds": round(s, 3),
                "execs_per_s": round(self.execs / s, 1), "lookups_checked": self.lookups,
                "lookups_ok": self.lookups_ok, "lookups_justified": self.lookups_justified,
                "lookups_unjustified": self.lookups_unjustified, "internal_errors": self.internal_errors,
                "internal_signatures": self.internal_signatures, "findings": self.findings,
                "signatures": self.signatures, "new_signatures": self.new}


def _total(counts: Any) -> int:
    return int(counts)


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout(traceback.extract_stack(frame))


def hang_signature(timeout: CaseTimeout, target: str) -> tuple[Signature, str]:
    """What a timed-out case was doing, and who is to blame. Stuck inside the system under test
    (harness/famfs: its innermost frame of this repository lies there): a famfs hang, `timeout`
    with famfs's frames.
    Stuck in the harness (the reference model, a generator, a case driver): `harness-hang`, a
    bug of ours that is kept apart from famfs findings, named by the harness frame it sat in."""
    text = "case ran past its timeout; stack at the timeout (innermost last):\n" + "".join(
        traceback.format_list(timeout.stack))
    ours = [f for f in timeout.stack if in_repository(f.filename)]
    famfs = frames_of_stack(timeout.stack)
    if ours and famfs and famfs[0] == repo_frame(ours[-1]):
        return Signature.of(Kind.TIMEOUT, target, famfs), text
    where = [repo_frame(f) for f in reversed(ours)]
    return Signature.of(Kind.HARNESS_HANG, target, where[:1]), text


class CaseRunner:
    """Runs inputs through `target`, recording findings in `store` (if any)."""

    def __init__(self, target: Target, store: CrashStore | None = None, *, seed: int | None = None,
                 mode: str = "", rss_limit_mb: int = 2048, engine: str = "", repro_times: int = 10):
        self.target = target
        self.store = store
        self.seed = seed
        self.mode = mode
        self.engine = engine
        self.rss_limit = rss_limit_mb << 20
        self.repro_times = repro_times          # a new crash is re-run this often, rate recorded
        self.stats = Stats(target.name)
        self._proc: Any = None
        self._use_alarm = True
        try:
            signal.signal(signal.SIGALRM, _on_alarm)
        except ValueError:                     # not the main thread: no per-case timeout
            self._use_alarm = False

    def outcome(self, data: bytes) -> tuple[Signature | None, str, int]:
        """(signature or None, traceback text, lookups checked) of one input; records nothing."""
        sig, tb, counts = self._outcome(data)
        return sig, tb, _total(counts)

    def _outcome(self, data: bytes) -> tuple[Signature | None, str, Any]:
        if self._use_alarm:
            signal.setitimer(signal.ITIMER_REAL, self.target.timeout_s)
        try:
            n = self.target.one_input(data)
            return None, "", n or 0
        except CaseTimeout as t:
            sig, text = hang_signature(t, self.target.name)
            return sig, f"case ran past {self.target.timeout_s} s; " + text, 0
        except HarnessError:
            raise
        except Exception as e:  # noqa: BLE001 - every other escape is a finding
            text = traceback.format_exc()
            internal = getattr(e, "error", None)
            if system().finding_kinds.get(type(e).__name__) == "internal-error" and internal is not None:
                text = f"{text}\nfamfs reported (internal error in {internal.where}):\n{internal.traceback}"
            return Signature.from_exception(e), text, getattr(e, "counts", 0)
        finally:
            if self._use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)

    def run_one(self, data: bytes) -> Signature | None:
        sig, tb, counts = self._outcome(data)
        st = self.stats
        st.execs += 1
        st.add(counts)
        if sig is None and st.execs % 64 == 0:
            sig, tb = self._rss_check()
        if sig is not None:
            st.findings += 1
            st.signatures[sig.key] = sig.title
            if sig.kind == Kind.INTERNAL_ERROR:
                st.internal_errors += 1
                st.internal_signatures[sig.key] = sig.title
            if self.store is not None:
                folder = self.store.root / self.target.name / sig.key
                _, is_new = self.store.save(self.target.name, sig, data, traceback=tb, seed=self.seed,
                                            mode=self.mode, repro_cmd=repro_command(folder),
                                            extra={"engine": self.engine})
                if is_new:
                    st.new[sig.key] = sig.title
                    k = sum(1 for _ in range(self.repro_times) if self._outcome(data)[0] == sig)
                    self.store.set_reproduced(self.target.name, sig.key, k, self.repro_times)
        return sig

    def _rss_check(self) -> tuple[Signature | None, str]:
        import psutil
        if self._proc is None:
            self._proc = psutil.Process()
        rss = self._proc.memory_info().rss
        if rss > self.rss_limit:
            return Signature.of(Kind.RSS, self.target.name), f"RSS {rss >> 20} MiB over {self.rss_limit >> 20} MiB"
        return None, ""


def repro_command(folder: Any) -> str:
    """The one-line command that replays a crash folder (relative to the working directory when
    it lies below it)."""
    path = os.path.relpath(folder) if not os.path.relpath(folder).startswith("..") else os.fspath(folder)
    return f"famfs-fuzz repro {path}"
