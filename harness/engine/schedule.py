"""Which target runs next: a sweep over every target, then an upper-confidence bandit on growth.

The policy only decides; `slots.run` executes what it decides and reports back.

Sweep: every target once, `sweep_s` seconds (the slot runner counts them from when the corpus
is loaded, up to a cap), then again (up to `sweep_tries` shares) for a target still running its
corpus when its share ended, cheapest first (shortest-processing-time order on `costs`, the
expected start-up + corpus seconds): SPT minimizes the mean time until a target has had its
first look, so a bug that some target reaches within seconds is found early whichever target it
is; the costly ones (a FUSE mount, a slow corpus) come last. (Longest first would shorten the
sweep's makespan by at most one share, and put every in-process target behind the mounts:
measured, log_replay then started 27 s into a 60 s job.)

Then each free slot gets the target with the highest UCB1 score among those not running:

    score = value / top + explore * sqrt(2 ln(shares so far) / shares of it)

where `value` is an exponentially decayed mean (weight `decay` on the newest share) of the
reward "new libFuzzer features per second of the share" (a new signature counts as
`signature_weight` features; where libFuzzer reports no features, new corpus files count
instead). `top` is the highest value now, but at least 5 % of the best reward ever seen: the
first term is in [0, 1] whatever the units, and once every target's growth has decayed below
that floor, no target keeps a lead it no longer earns;
the decay moves time away from a target whose growth stopped, and the exploration term keeps
every target getting shares (when nothing grows, the score is exploration only: round robin).
With `explore` 0.7, one target growing 40 features a share and three flat ones, the grower gets
34 of 40 adaptive shares and each flat one 2 (0.5: 37 and 1; 1.0: 31 and 3;
tests/engine/test_schedule.py).
A target's k-th share lasts `sweep_s * 2**k`, at most `quantum_s` (the doubling trick): right
after the sweep every estimate rests on a few seconds, and a round of `quantum_s` shares over
every target (14 targets, 2 slots, 10 s: 70 s) would commit most of a short job to them; with
doubling, what a wrong estimate costs stays of the order of what that target has had, and a
target that keeps winning gets ever longer shares. Measured (fuzz-default, 120 s, 14 targets,
loaded 2-core machine): with 10 s shares after the sweep, discovery_race had its second share
85 s into the job. Campaigns are paused between shares, not restarted, so no share runs its
corpus again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Collection, Sequence


@dataclass(frozen=True)
class Share:
    """One decision: run `target` for `seconds`."""

    target: str
    seconds: float
    phase: str                      # "sweep" or "adaptive"


@dataclass(frozen=True)
class Gain:
    """What one share of a target found."""

    seconds: float                  # how long it ran
    features: int | None = None     # libFuzzer ft growth (None: not reported)
    corpus: int = 0                 # new corpus files
    signatures: int = 0             # new signatures
    loaded: bool = True             # has the target got through its corpus?


@dataclass
class Arm:
    name: str
    cost: float                     # expected start-up + corpus load seconds (sweep order)
    shares: int = 0
    seconds: float = 0.0
    value: float = 0.0
    rewards: list[float] = field(default_factory=list)


class Schedule:
    """The policy; deterministic for the same targets, hints and rewards."""

    def __init__(self, targets: Sequence[str], *, sweep_s: float = 4.0, quantum_s: float = 15.0,
                 min_s: float = 2.0, decay: float = 0.5, explore: float = 0.7, signature_weight: float = 25.0,
                 costs: dict[str, float] | None = None, sweep_tries: int = 3):
        if not targets:
            raise ValueError("a schedule needs at least one target")
        costs = costs or {}
        self.arms = {t: Arm(t, float(costs.get(t, 0.0))) for t in targets}
        self.order = sorted(targets, key=lambda t: (self.arms[t].cost, list(targets).index(t)))
        self.sweep_s, self.quantum_s, self.min_s = sweep_s, quantum_s, min_s
        self.decay, self.explore, self.signature_weight = decay, explore, signature_weight
        self.swept: set[str] = set()
        self.loaded: set[str] = set()
        self.tries: dict[str, int] = dict.fromkeys(targets, 0)
        self.sweep_tries = sweep_tries
        self.total = 0
        self.best = 0.0
        self.floor = 0.05

    def reward(self, g: Gain) -> float:
        found = g.features if g.features is not None else g.corpus
        return (max(0, found) + self.signature_weight * g.signatures) / max(g.seconds, 1.0)

    def next(self, left: float, running: Collection[str] = ()) -> Share | None:
        """The next share for a free slot, given `left` seconds of budget; None when no target
        can use a slot now (all running, or too little time left)."""
        for t in self.order:                                    # the sweep comes first
            if t not in self.swept and t not in running:
                secs = min(self.sweep_s, left)
                if secs < self.min_s:
                    return None
                self.swept.add(t)
                self.tries[t] += 1
                return Share(t, secs, "sweep")
        for t in sorted(self.order, key=lambda t: self.tries[t]):     # then what is still loading
            if (t not in self.loaded and t not in running and self.arms[t].shares
                    and self.tries[t] < self.sweep_tries and left >= self.min_s):
                self.tries[t] += 1
                return Share(t, min(self.sweep_s, left), "sweep")
        free = [a for a in self.arms.values() if a.name not in running]
        if not free:
            return None
        best = max(self.score(a) for a in free)
        arm = next(a for a in sorted(free, key=lambda a: self.order.index(a.name)) if self.score(a) == best)
        secs = min(self.quantum_s, self.sweep_s * 2 ** arm.shares, left)
        if secs < self.min_s:
            return None
        return Share(arm.name, secs, "adaptive")

    def score(self, a: Arm) -> float:
        top = max(max(x.value for x in self.arms.values()), self.floor * self.best)
        exploit = a.value / top if top > 0 else 0.0
        return exploit + self.explore * math.sqrt(2 * math.log(max(self.total, 2)) / max(a.shares, 1))

    def record(self, target: str, gain: Gain) -> None:
        """Report what a finished share found."""
        a = self.arms[target]
        r = self.reward(gain)
        a.value = r if a.shares == 0 else (1 - self.decay) * a.value + self.decay * r
        self.best = max(self.best, r)
        a.shares += 1
        a.seconds += gain.seconds
        if gain.loaded:
            self.loaded.add(target)
        a.rewards.append(round(r, 3))
        self.total += 1

    def state(self) -> dict[str, dict[str, float | list[float]]]:
        return {t: {"shares": a.shares, "seconds": round(a.seconds, 1), "value": round(a.value, 3),
                    "rewards": a.rewards} for t, a in self.arms.items()}
