"""Race plans: the kernel side's publish and discovery steps under a chosen schedule and weak memory.

`publish_case` runs one publisher (the daxdev table's own install steps) against readers that
look the slot up again and again, every store draining when the schedule says; the readers look
up through the kernel side's one lookup path (`KernelMount.lookup_steps`, which reports to the
probe), so a bug in that path is a bug these races see. `discovery_case`
runs readers that first-touch files on undiscovered indices through the kernel side's own lazy
discovery (GET_FMAP, GET_DAXDEV round trip, install, lookup), with GET_DAXDEV optionally failing
for one of them. Both report every lookup to a `LookupChecker` and return it with the trace, so
the target decides; the fault switches (`barrier`, `valid_first`) are the table's own.
`teardown_case` detaches the table (its write lock) while readers look up through the same path.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.famfs.daxtable import DaxdevTable
from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid
from harness.faults.memory import WeakMemory
from harness.faults.schedule import Scheduler, Task
from harness.famfs.invariants import Invariant
from harness.famfs.probe import Probe


@dataclass
class FakeDev:
    """A device as the kernel side sees it (name, dev_t) with recognisable content."""

    name: str
    devno: int
    size: int = 1 << 22

    def read(self, offset: int, length: int) -> bytes:
        return bytes([self.devno & 0xFF]) * length

    def read_view(self, offset: int, length: int) -> memoryview:
        return memoryview(self.read(offset, length))


@dataclass
class RaceResult:
    trace: list[str]
    outcomes: dict[str, Any] = field(default_factory=dict)
    deadlock: list[str] = field(default_factory=list)     # the CPUs left waiting (Scheduler.deadlock)


# What the oracle needs to judge a race's lookups: index -> UUID, and node-local name -> UUID.
def _uuid_of(i: int) -> Uuid:
    return Uuid(b"uuid-%d" % i + bytes(16 - len(b"uuid-%d" % i)))


_U1 = _uuid_of(1)
PUBLISH_EXPECTED = ({1: _U1}, {"n": {"dax1.0": _U1}})

DISCOVERY_EXPECTED = ({i: _uuid_of(i) for i in range(4)},
                      {"n": {f"dax{i}.0": _uuid_of(i) for i in range(4)}})


def publish_case(choose: Callable[[int], int], probe: Probe, *, readers: int = 2, reads: int = 3,
                 barrier: bool = True, valid_first: bool = False) -> RaceResult:
    """One publisher installs slot 1 on cpu0 (a push: DAXDEV_OPEN) while `readers` CPUs each look
    it up `reads` times through the kernel side's lookup path; every lookup goes to `probe`."""
    mem = WeakMemory()
    table = DaxdevTable(8, mem, barrier=barrier, valid_first=valid_first)
    dev = FakeDev("dax1.0", 0x0FA1)
    kernel = _kernel([dev], table, probe)

    def reader() -> Task:
        for _ in range(reads):
            yield from _lookup(kernel, 1)
        return None

    tasks: dict[str, Task] = {"cpu0": table.install_steps(1, dev.devno, dev, dev.name)}
    tasks.update({f"cpu{k + 1}": reader() for k in range(readers)})
    sched = Scheduler(mem, choose)
    out = sched.run(tasks)
    return RaceResult(sched.trace, out, sched.deadlock)


def _kernel(devices: list["FakeDev"], table: DaxdevTable, probe: Probe) -> Any:
    """The kernel side of a push generation over `table` (no lazy pull: the race's publisher is
    the only installer), for its one lookup path."""
    from harness.famfs import wire
    from harness.famfs.kernel import KernelMount
    return KernelMount(_Host(devices), _Server(devices, None, {}, None), wire.abi("push-fd"), probe=probe, table=table)


def _lookup(kernel: Any, index: int) -> Task:
    """One fault-time lookup (a clean failure is an outcome, judged by the probe's checker)."""
    from harness.famfs.kernel import KernelError
    try:
        view = yield from kernel.lookup_steps(index)
        return view
    except KernelError:
        return None


class _Server:
    """GET_DAXDEV for the race: correct replies, or an error for the `fail_for` CPU."""

    def __init__(self, devices: list[FakeDev], mem: WeakMemory | None, fmaps: dict[int, bytes], fail_for: str | None):
        self.devices, self.mem, self.fmaps, self.fail_for = devices, mem, fmaps, fail_for

    def get_fmap(self, nodeid: int) -> bytes:
        return self.fmaps[nodeid]

    def get_daxdev(self, index: int) -> bytes:
        from harness.famfs import wire
        if self.mem is not None and self.mem.cpu == self.fail_for:
            raise FamfsError(errno.EIO, Invariant.IDX_RESOLVE, "GET_DAXDEV failed (fault)")
        d = self.devices[index]
        return wire.encode_daxdev_out(wire.DaxdevReply(index, d.name.encode(), d.devno), wire.abi("pull-devt"))


class _Host:
    def __init__(self, devices: list[FakeDev]):
        self.node = "n"
        self.devices = devices

    def by_devno(self, devno: int) -> FakeDev | None:
        return next((d for d in self.devices if d.devno == devno), None)

    def by_name(self, name: str) -> FakeDev | None:
        return next((d for d in self.devices if d.name == name), None)


def discovery_case(choose: Callable[[int], int], probe: Probe, *, files: tuple[int, ...] = (1, 1),
                   fail_for: str | None = None, barrier: bool = True) -> RaceResult:
    """Readers on cpu1.. each read a file living on index files[k] (all undiscovered but 0)."""
    from harness.famfs import wire
    from harness.famfs.kernel import KernelError, KernelMount
    gen = wire.abi("pull-devt")
    mem = WeakMemory()
    devices = [FakeDev(f"dax{i}.0", 0x0F00 + i) for i in range(4)]
    fmaps = {}
    for k, index in enumerate(files):
        msg = wire.FmapMessage(0, wire.EXT_SIMPLE, 4096, extents=(wire.WireSimple(index, 2 << 20, 2 << 20),))
        fmaps[10 + k] = wire.encode_fmap(msg, gen)
    table = DaxdevTable(gen.nslots, mem, barrier=barrier)
    kernel = KernelMount(_Host(devices), _Server(devices, mem, fmaps, fail_for), gen, probe=probe, table=table)
    mem.cpu = "cpu0"
    kernel.mount()                                   # index 0 only
    mem.drain_all()

    def reader(nodeid: int) -> Task:
        try:
            data = yield from kernel.read_steps(nodeid, 0, 4096)
            return ("ok", data)
        except KernelError as e:
            return ("error", e)

    tasks = {f"cpu{k + 1}": reader(10 + k) for k in range(len(files))}
    sched = Scheduler(mem, choose)
    out = sched.run(tasks)
    return RaceResult(sched.trace, out, sched.deadlock)


def teardown_case(choose: Callable[[int], int], probe: Probe, *, readers: int = 2, locking: bool = True) -> RaceResult:
    """Teardown (cpu0) detaches the table while readers look up a published slot through the
    kernel side's lookup path."""
    mem = WeakMemory()
    table = DaxdevTable(4, mem, locking=locking)
    dev = FakeDev("dax1.0", 0x0FA1)
    mem.cpu = "cpu0"
    table.install(1, dev.devno, dev, dev.name)
    mem.drain_all()
    kernel = _kernel([dev], table, probe)

    def reader() -> Task:
        yield from _lookup(kernel, 1)
        return None

    tasks: dict[str, Task] = {"cpu0": table.clear_steps()}
    tasks.update({f"cpu{k + 1}": reader() for k in range(readers)})
    sched = Scheduler(mem, choose)
    out = sched.run(tasks)
    return RaceResult(sched.trace, out, sched.deadlock)
