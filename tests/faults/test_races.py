"""Discovery races, the publish-order model and torn log appends: clean on main; with a fault
switched on (barrier removed, valid stored first, counters stored before the entry) the harness
finds the violation, minimizes it to a short schedule, and the crasher replays identically."""
from __future__ import annotations

import random
import time
from functools import partial

import pytest

from harness.cases.races import discovery_race_case, log_tail_case, publish_order_case
from harness.engine.crashstore import CrashStore
from harness.engine.minimize import minimize_bytes
from harness.engine.registry import Target
from harness.engine.repro import Outcome, reproduce
from harness.engine.runner import CaseRunner
from harness.faults.logtail import visible_states
from harness.faults.races import PUBLISH_EXPECTED, publish_case
from harness.faults.schedule import byte_chooser
from harness.gen.decode import Choices
from harness.oracle.lookups import LookupChecker


def _inputs(n: int) -> list[bytes]:
    rng = random.Random(5)
    return [rng.randbytes(rng.randint(0, 96)) for _ in range(n)]


def test_publish_order_is_clean_on_main_over_many_schedules():
    """1500 schedules of the publish-order model: none is a finding, and every one of them has
    the oracle judge at least one lookup (7370 in all when this was written)."""
    counts = [publish_order_case(data) for data in _inputs(1500)]
    assert min(counts) >= 1 and sum(counts) >= 5000


def test_discovery_races_are_clean_on_main_over_many_schedules():
    """400 schedules of lazy discovery: none is a finding, and the oracle judges lookups in
    nearly every one (763 lookups when this was written; a schedule whose readers all fail
    over before discovery judges none)."""
    counts = [discovery_race_case(data) for data in _inputs(400)]
    assert sum(1 for c in counts if c >= 1) >= 380 and sum(counts) >= 600


@pytest.mark.slow
def test_torn_appends_are_clean_on_main_over_many_workloads(monkeypatch):
    """100 workloads of 1-3 appends: none is a finding, and the reader replays every state the
    weak memory can show (log_tail_case performs no lookups, so the states are what is counted):
    at least the 17 states of one append per workload (the 15 proper subsets of the entry's four
    stores, the whole entry before the counters, the complete append)."""
    import harness.faults.logtail as logtail
    states = 0

    def counted(program):                       # visible_states, counting what the reader gets
        nonlocal states
        for state in visible_states(program):
            states += 1
            yield state

    monkeypatch.setattr(logtail, "visible_states", counted)
    inputs = _inputs(100)
    assert all(log_tail_case(data) == 0 for data in inputs)
    assert states >= 17 * len(inputs)


def find(one_input, tmp_path, budget: float = 60.0, max_len: int = 64):
    """Fuzz `one_input` with random bytes until the first finding (within `budget` seconds)."""
    target = Target(name="faulty", one_input=one_input)
    runner = CaseRunner(target, CrashStore(tmp_path / "crashers"))
    rng = random.Random(11)
    start = time.monotonic()
    while time.monotonic() - start < budget:
        data = rng.randbytes(rng.randint(2, max_len))
        sig = runner.run_one(data)
        if sig is not None:
            return runner, data, sig, time.monotonic() - start
    pytest.fail(f"no finding within {budget} s")


class Exec:
    def __init__(self, runner: CaseRunner):
        self.runner = runner

    def run(self, data: bytes) -> Outcome:
        return Outcome(self.runner.outcome(data)[0])


@pytest.mark.parametrize("fault", [dict(barrier=False), dict(valid_first=True)], ids=["no-barrier", "valid-first"])
def test_publish_fault_is_found_minimized_and_replayed(tmp_path, fault):
    runner, data, sig, took = find(partial(publish_order_case, **fault), tmp_path)
    assert sig.what == "TBL-PUBLISH"
    small = minimize_bytes(data, lambda d: runner.outcome(d)[0] == sig).value
    r = reproduce(Exec(runner), small, sig, times=10)
    assert (r.k, r.n) == (10, 10)
    checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1])
    c = Choices(small[:2])                      # as publish_order_case reads its input
    trace = publish_case(byte_chooser(small[2:]), checker, readers=c.int(1, 3), reads=c.int(1, 4), **fault).trace
    print(f"\n{fault}: found in {took:.3f} s; minimized {len(data)} -> {len(small)} bytes; schedule: {trace}")
    assert len(trace) <= 16, trace


def test_discovery_without_barrier_is_found(tmp_path):
    runner, data, sig, took = find(partial(discovery_race_case, barrier=False), tmp_path, max_len=96)
    assert sig.what == "TBL-PUBLISH"
    assert reproduce(Exec(runner), data, sig, times=10).k == 10


@pytest.mark.parametrize("check_crc", [True, False])
def test_counter_before_entry_is_found(tmp_path, check_crc):
    runner, data, sig, took = find(partial(log_tail_case, counter_first=True, check_crc=check_crc), tmp_path)
    assert sig.what == "LOG-PREFIX"
    assert reproduce(Exec(runner), data, sig, times=10).k == 10


def test_visible_states_respect_the_barrier():
    program = [(0, b"a"), (1, b"b"), None, (2, b"c")]
    states = [sorted(off for off, _ in s) for s in visible_states(program)]
    assert [0, 1] in states and [2] not in states and [0, 2] not in states
    assert states == [[], [0], [1], [0, 1], [0, 1, 2]]


def test_teardown_without_the_lock_is_found(tmp_path):
    runner, data, sig, took = find(lambda d: discovery_race_case(b"\x01" + d, locking=False), tmp_path)
    assert sig.what == "TBL-PUBLISH"
    assert reproduce(Exec(runner), data, sig, times=10).k == 10


def test_a_schedule_replays_the_identical_interleaving():
    data = bytes(random.Random(4).randbytes(40))
    traces = set()
    for _ in range(10):
        checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1])
        traces.add(tuple(publish_case(byte_chooser(data), checker, readers=2, reads=2, barrier=False).trace))
    assert len(traces) == 1


def test_the_races_look_up_through_the_kernel_lookup_path(monkeypatch):
    """A bug planted in KernelMount.lookup_steps (trust a slot whose dev_t is set, valid or not)
    is a bug the publish race sees: its readers use that path, not a copy of the valid check."""
    from harness.cases.races import publish_order_case
    from harness.famfs import kernel
    from harness.oracle.invariants import InvariantViolation

    def trusting(self, index):
        self.lookups += 1
        view = yield from self.table.read_steps(index)
        ok = view is not None and (view.valid or view.devno)
        self.probe.lookup(self.node, index, view.name if ok else None, view.devno if ok else 0, 0 if ok else 5)
        return view

    rng = random.Random(2)
    inputs = [rng.randbytes(rng.randint(2, 64)) for _ in range(400)]
    assert all(publish_order_case(d) >= 0 for d in inputs)                  # clean on main
    monkeypatch.setattr(kernel.KernelMount, "lookup_steps", trusting)
    found = []
    for d in inputs:
        try:
            publish_order_case(d)
        except InvariantViolation as v:
            found.append(v)
    assert found and all(v.invariant.value == "TBL-PUBLISH" and v.where == "lookup@race/publish" for v in found)


def test_a_waiting_task_is_offered_again_only_after_another_step():
    """Spinning on an unchanged lock is no step: a task that yields "wait" is left out of the
    options until some other task has run; the choices past the input's end (option 0) then
    move the holder instead of spinning cpu0 to `max_steps`."""
    from harness.faults.memory import WeakMemory
    from harness.faults.schedule import Scheduler
    held = {"lock": True}

    def waiter():
        while held["lock"]:
            yield "wait for lock"
        yield "got it"
        return "w"

    def holder():
        yield "work"
        yield "work"
        held["lock"] = False
        yield "unlock"
        return "h"

    sizes: list[int] = []

    def first(n: int) -> int:
        sizes.append(n)
        return 0
    sched = Scheduler(WeakMemory(), first)
    assert sched.run({"cpu0": waiter(), "cpu1": holder()}) == {"cpu0": "w", "cpu1": "h"}
    assert not sched.deadlock
    assert sched.trace.count("cpu0: wait for lock") == 3       # once after each of the holder's steps
    assert len(sched.trace) == 3 + 3 + 1 and 1 in sizes       # while cpu0 waits, only cpu1 is offered


def test_a_lock_nothing_releases_is_a_deadlock_and_a_finding(monkeypatch):
    """Teardown that never drops the write lock: readers wait with nothing left to run. The
    scheduler names them (no run to `max_steps`), and the case reports IDX-LOOKUP."""
    from harness.famfs.daxtable import DaxdevTable
    from harness.oracle.invariants import InvariantViolation
    clear = DaxdevTable.clear_steps

    def keeps_the_lock(self):
        yield from clear(self)
        self.writer = True                                     # the up_write() lost
    monkeypatch.setattr(DaxdevTable, "clear_steps", keeps_the_lock)
    with pytest.raises(InvariantViolation) as e:
        discovery_race_case(b"\x01\x01" + bytes(64))           # teardown, 2 readers, cpu0 first
    assert e.value.invariant == "IDX-LOOKUP" and "nothing can release it" in str(e.value)
