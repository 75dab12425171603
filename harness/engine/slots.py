"""Run a `schedule.Schedule` on every core: one campaign per slot, the next share as a slot frees.

`run_shares` keeps `slots` campaigns running until the wall-clock budget is spent, asks the
schedule for each free slot's next share, reports each finished share's gain back, and returns
one `ShareRecord` per share (which target ran when, for how long, on which slot, what it found)
and each target's whole result. A target's campaign (`campaign.Campaign`: its Atheris jobs) is
started at its first share and paused between shares, not restarted: the corpus is run once per
job, not once per share, and the child's start-up (interpreter, atheris, instrumenting famfs:
2-5 s here) is paid once. A sweep share lasts `seconds` past the target's corpus (capped), so
every target gets a few seconds of fuzzing with its corpus loaded; a target whose corpus is
not through when the cap ends its share gets more sweep shares before the adaptive ones. New signatures are streamed
as they appear. SIGINT/SIGTERM (in the main thread) or `stop` end every campaign; their results
are kept.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from harness.engine.campaign import COUNTERS, Campaign, FuzzResult, OnFinding, signals_stop
from harness.engine.errors import HarnessError
from harness.engine.schedule import Gain, Schedule
from harness.engine.zygote import Zygote

PAUSE_S = 0.5                 # a share's cost beyond its seconds (the pause at a case boundary)


class Runs(Protocol):
    """What the slot runner needs of a campaign (`campaign.Campaign`)."""

    def run(self, seconds: float | None = None, *, stop: threading.Event | None = None,
            after_inited: bool = False, cap: float | None = None, budget: float | None = None,
            until: float | None = None) -> FuzzResult: ...

    def pause(self) -> None: ...

    def end(self) -> None: ...

    def finish(self) -> FuzzResult: ...


@dataclass
class ShareRecord:
    target: str
    slot: int
    phase: str
    start: float               # seconds since the job started
    seconds: float             # wall time of the share
    budget: float              # what the schedule gave it
    result: FuzzResult         # what the share did (deltas of its campaign)
    corpus_growth: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"target": self.target, "slot": self.slot, "phase": self.phase, "start": round(self.start, 2),
                "seconds": round(self.seconds, 2), "budget": round(self.budget, 2), "execs": r.execs,
                "corpus_execs": r.corpus_execs, "ft_start": r.ft_start, "ft_end": r.ft_end,
                "cov_start": r.cov_start, "cov_end": r.cov_end, "corpus_growth": self.corpus_growth,
                "new_signatures": sorted(r.new), "error": self.error}


@dataclass
class Scheduled:
    shares: list[ShareRecord] = field(default_factory=list)
    results: dict[str, FuzzResult] = field(default_factory=dict)     # each target's whole campaign


def _files(d: Path) -> int:
    try:
        return sum(1 for _ in d.iterdir())
    except OSError:
        return 0


def gain_of(rec: ShareRecord) -> Gain:
    r = rec.result
    features = None if r.ft_start is None or r.ft_end is None else r.ft_end - r.ft_start
    loaded = bool(r.corpus_execs) or r.ft_start is not None or bool(rec.error)
    # corpus files written while the corpus still loads are not growth (libFuzzer keeps seeds there)
    return Gain(seconds=rec.seconds, features=features, corpus=rec.corpus_growth if loaded else 0,
                signatures=len(r.new), loaded=loaded)


def _settle(records: list[ShareRecord], final: FuzzResult) -> None:
    """Give a target's last share what its campaign's end added (counters written at exit,
    findings reconciled with the crash store), so the shares sum to the campaign."""
    if not records:
        return
    last = records[-1].result
    last.execs += final.execs - sum(r.result.execs for r in records)
    last.lookups += final.lookups - sum(r.result.lookups for r in records)
    last.findings += final.findings - sum(r.result.findings for r in records)
    for k in COUNTERS:
        last.counters[k] += final.counters.get(k, 0) - sum(r.result.counters.get(k, 0) for r in records)
    seen = {k for r in records for k in r.result.new}
    last.new.update({k: v for k, v in final.new.items() if k not in seen})
    last.signatures.update(final.signatures)
    last.errors += final.errors


def run_shares(schedule: Schedule, *, slots: int, budget: float, workdir: Path,
               progress: Callable[[str], None] | None = None, on_finding: OnFinding | None = None,
               stop_on_new: bool = False, stop: threading.Event | None = None, jobs_per_share: int = 1,
               make: Callable[..., Runs] | None = None, **campaign_kwargs: Any) -> Scheduled:
    """Run shares of `schedule` on `slots` slots for `budget` seconds of wall time; `make(name,
    **kwargs)` builds a target's campaign (default `campaign.Campaign`)."""
    stop = stop or threading.Event()
    printing = threading.Lock()

    def say(line: str) -> None:               # one whole line at a time from every slot's thread
        if progress is not None:
            with printing:
                progress(line)

    def finding(target: str, key: str, title: str, folder: Path) -> None:
        if on_finding is not None:
            on_finding(target, key, title, folder)
        else:
            say(f"  NEW {target} at {time.monotonic() - started:.1f} s: {title}  -> {folder}")
    started = time.monotonic()
    deadline = started + budget
    lock = threading.Condition()
    running: set[str] = set()
    out = Scheduled()
    campaigns: dict[str, Runs] = {}
    build = make or Campaign
    zyg = None
    if make is None and campaign_kwargs.get("spawner", "") is None:
        campaign_kwargs.pop("spawner")
    elif make is None and "spawner" not in campaign_kwargs:
        # one zygote forks every target's jobs: the sweep pays no interpreter start-up per target
        zyg = campaign_kwargs["spawner"] = Zygote(list(schedule.arms), workdir / "zygote.log")
    # a sweep share runs its seconds past the corpus, but at most a fair part of half the budget
    # from when its child is up: the sweep of every target fits in about half the job (plus the
    # children's start, which a loaded machine stretches to 6-8 s)
    sweep_cap = max(schedule.sweep_s, 0.5 * budget * slots / len(schedule.arms))

    def worker(slot: int) -> None:
        while not stop.is_set():
            with lock:
                while True:
                    now = time.monotonic()
                    share = None if stop.is_set() else schedule.next(deadline - now - PAUSE_S, running)
                    if share is not None or stop.is_set() or not running:
                        break
                    if deadline - now <= schedule.min_s:
                        break
                    lock.wait(0.5)
                if share is None:
                    return
                running.add(share.target)
                fresh = share.target not in campaigns
                if fresh:
                    campaigns[share.target] = build(
                        share.target, jobs=jobs_per_share, workdir=workdir, progress=say if progress else None,
                        on_finding=finding, stop_on_new=stop_on_new, clock=started, **campaign_kwargs)
                c = campaigns[share.target]
            t0 = time.monotonic()
            say(f"{share.target}: fuzzing for {share.seconds:.0f} s")
            corpus = workdir / share.target / "corpus"
            had = _files(corpus)
            error = ""
            sweep = share.phase == "sweep"
            cap = max(share.seconds, min(deadline - t0 - PAUSE_S, sweep_cap))
            try:
                r = c.run(share.seconds, stop=stop, after_inited=sweep, cap=cap if sweep else None,
                          budget=share.seconds, until=deadline - PAUSE_S)
                if not stop.is_set():            # at the end every campaign is ended, not paused
                    c.pause()
            except HarnessError as e:
                r, error = FuzzResult(share.target, "atheris"), str(e)
                say(f"  WARNING {share.target}: {error.splitlines()[0]}")
            except Exception:  # noqa: BLE001 - a bug in one campaign must not stall every slot
                r, error = FuzzResult(share.target, "atheris"), traceback.format_exc()
                say(f"  WARNING {share.target}: the campaign failed: {error.strip().splitlines()[-1]}")
            rec = ShareRecord(share.target, slot, share.phase, t0 - started, time.monotonic() - t0, share.seconds,
                              r, max(0, _files(corpus) - had), error)
            with lock:
                out.shares.append(rec)
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
        for c in campaigns.values():            # every campaign ends at once, then each is read
            c.end()
        out.shares.sort(key=lambda r: r.start)
        for name, c in campaigns.items():
            try:
                out.results[name] = final = c.finish()
            except HarnessError as e:
                out.results[name] = final = FuzzResult(name, "atheris", errors=[str(e)])
                say(f"  WARNING {name}: {str(e).splitlines()[0]}")
            _settle([rec for rec in out.shares if rec.target == name], final)
        if zyg is not None:
            zyg.close()
    return out
