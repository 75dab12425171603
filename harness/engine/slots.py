"""Run a `schedule.Schedule` on every core: one campaign per slot, the next share as a slot frees.

`run_shares` keeps `slots` campaigns (one Atheris child each) running until the wall-clock
budget is spent, asks the schedule for each free slot's next share, reports each finished
share's gain back, and returns one `ShareRecord` per share (which target ran when, for how long,
on which slot, what it found). New signatures are streamed as they appear. SIGINT/SIGTERM (in
the main thread) or `stop` end every running campaign; their results are kept.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.engine.campaign import FuzzResult, OnFinding, fuzz, signals_stop
from harness.engine.crashstore import HarnessError
from harness.engine.schedule import Gain, Schedule

START_S = 2.0                 # a child's start and end beyond its -max_total_time (python, atheris,
                              # instrumenting famfs); measured from the finished shares as the job goes


@dataclass
class ShareRecord:
    target: str
    slot: int
    phase: str
    start: float               # seconds since the job started
    seconds: float             # wall time of the campaign
    budget: float              # what the schedule gave it
    result: FuzzResult
    corpus_growth: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"target": self.target, "slot": self.slot, "phase": self.phase, "start": round(self.start, 2),
                "seconds": round(self.seconds, 2), "budget": round(self.budget, 2), "execs": r.execs,
                "corpus_execs": r.corpus_execs, "ft_start": r.ft_start, "ft_end": r.ft_end,
                "cov_start": r.cov_start, "cov_end": r.cov_end, "corpus_growth": self.corpus_growth,
                "new_signatures": sorted(r.new), "error": self.error}


def _files(d: Path) -> int:
    try:
        return sum(1 for _ in d.iterdir())
    except OSError:
        return 0


def gain_of(rec: ShareRecord) -> Gain:
    r = rec.result
    features = None if r.ft_start is None or r.ft_end is None else r.ft_end - r.ft_start
    load = r.corpus_execs / r.execs_per_s if r.execs_per_s and r.corpus_execs else None
    return Gain(seconds=rec.seconds, features=features, corpus=rec.corpus_growth, signatures=len(r.new),
                load_s=None if load is None else min(load, 120.0))


def run_shares(schedule: Schedule, *, slots: int, budget: float, workdir: Path,
               progress: Callable[[str], None] | None = None, on_finding: OnFinding | None = None,
               stop_on_new: bool = False, stop: threading.Event | None = None,
               jobs_per_share: int = 1, campaign: Callable[..., FuzzResult] = fuzz,
               **fuzz_kwargs: Any) -> list[ShareRecord]:
    """Run shares of `schedule` on `slots` slots for `budget` seconds of wall time; `campaign`
    runs one share (`campaign.fuzz`'s signature)."""
    stop = stop or threading.Event()
    printing = threading.Lock()

    def say(line: str) -> None:               # one whole line at a time from every slot's thread
        if progress is not None:
            with printing:
                progress(line)
    started = time.monotonic()
    deadline = started + budget
    lock = threading.Condition()
    running: set[str] = set()
    records: list[ShareRecord] = []
    overhead = [START_S]
    counter = [0]

    def worker(slot: int) -> None:
        while not stop.is_set():
            with lock:
                while True:
                    left = deadline - time.monotonic() - overhead[0]
                    share = schedule.next(left, running) if not stop.is_set() else None
                    if share is not None or stop.is_set() or (not running and share is None):
                        break
                    if left <= schedule.min_s:
                        break
                    lock.wait(0.5)
                if share is None:
                    return
                running.add(share.target)
                counter[0] += 1
                tag = f"share{counter[0]:03d}-"
            t0 = time.monotonic()
            say(f"{share.target}: fuzzing for {share.seconds:.0f} s")
            corpus = workdir / share.target / "corpus"
            had = _files(corpus)
            error = ""
            try:
                r = campaign(share.target, max_time=share.seconds, jobs=jobs_per_share, workdir=workdir,
                         progress=say if progress else None, on_finding=on_finding, stop=stop, stop_on_new=stop_on_new,
                         warn_flat=False, log_tag=tag, **fuzz_kwargs)
            except HarnessError as e:
                r, error = FuzzResult(share.target, "atheris"), str(e)
                say(f"  WARNING {share.target}: {error.splitlines()[0]}")
            except Exception:  # noqa: BLE001 - a bug in one campaign must not stall every slot
                r, error = FuzzResult(share.target, "atheris"), traceback.format_exc()
                say(f"  WARNING {share.target}: the campaign failed: {error.strip().splitlines()[-1]}")
            rec = ShareRecord(share.target, slot, share.phase, t0 - started, time.monotonic() - t0, share.seconds,
                              r, max(0, _files(corpus) - had), error or "\n".join(r.errors))
            with lock:
                records.append(rec)
                overhead[0] = max(0.5, sum(max(0.0, x.seconds - x.budget) for x in records) / len(records))
                schedule.record(share.target, gain_of(rec))
                running.discard(share.target)
                if stop_on_new and r.new:
                    stop.set()
                lock.notify_all()

    threads = [threading.Thread(target=worker, args=(k,), name=f"slot-{k}", daemon=True) for k in range(slots)]
    with signals_stop(stop):
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.25)
    records.sort(key=lambda r: r.start)
    return records


def by_target(records: list[ShareRecord]) -> dict[str, FuzzResult]:
    """Each target's shares folded into one result (in order of first start)."""
    out: dict[str, FuzzResult] = {}
    for rec in records:
        r = rec.result
        if rec.target not in out:
            out[rec.target] = FuzzResult(rec.target, r.engine)
        out[rec.target].merge(r)
        out[rec.target].series += [{**p, "t": round(p["t"] + rec.start, 2)} for p in r.series]
    return out
