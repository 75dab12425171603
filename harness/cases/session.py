"""A live famfs session: a master appending to shared memory, two client daemons replaying it.

`Session` holds the state and one method per step: the master makes a directory, creates a file
(on any index defined so far, or striped), or adds the next daxdev; a client replays the log
(logplay); a client reads a file through the kernel side; a client's daemon dies and a new
one mounts the same memory (its replay must give the same namespace). After every step `check()` verifies
each client's namespace against what the master wrote (for the prefix it has replayed), and
every index lookup (IDX-LOOKUP, IDX-CLUSTER, TBL-PUBLISH); a read is judged by the oracle's one
read check (`oracle.case.check_files`, range by range against the model's verdict of the log).

Two drivers share it: `SessionMachine`, a Hypothesis `RuleBasedStateMachine` (shrinks to the
shortest failing step sequence), and `run_choices`, which lets Atheris bytes pick the steps.
The nodes see the same memory under different device names and orders, as CXL nodes do.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.ids import Uuid
from harness.famfs.image import Image, Interleave, mkfs_secondary
from harness.famfs.index import Daxdev
from harness.famfs.invariants import Invariant
from harness.gen.decode import Choices, head_end
from harness.gen.spec import BufferPool
from harness.oracle.case import Expectation, check_files, daemon_reader
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker
from harness.oracle.model import verdict

MiB = 1 << 20
NDEV = 4
DEV_SIZE = 16 * MiB
NODES = {"A": (0, 1, 2, 3), "B": (3, 1, 0, 2)}      # node -> spec device order of its dax0.0, dax1.0, ...


class Session:
    """The shared memory, the master's image, and the client daemons."""

    def __init__(self, abi: str = "pull-devt", pool: BufferPool | None = None):
        self.bufs = [pool.take(DEV_SIZE) if pool else bytearray(DEV_SIZE) for _ in range(NDEV)]
        self.uuids = [Uuid(uuid.UUID(int=0x5E55 + i).bytes) for i in range(NDEV)]
        self.master = Image.mkfs(self.bufs[:1], [DEV_SIZE], uuids=self.uuids[:1], log_len=64 << 10,
                                 add_secondaries=False)
        for i in range(1, NDEV):
            mkfs_secondary(self.bufs[i], DEV_SIZE, dev_uuid=self.uuids[i], fs_uuid=self.master.sb.fs_uuid,
                           system_uuid=self.master.sb.system_uuid)
        self.checker = LookupChecker(names={
            node: {f"dax{k}.0": self.uuids[i] for k, i in enumerate(order)} for node, order in NODES.items()})
        self.daemons: dict[str, Daemon] = {}
        for node, order in NODES.items():
            devs = [DaxDevice.in_memory(self.bufs[i], f"dax{k}.0", node=node) for k, i in enumerate(order)]
            host = Resolver(node, devs)
            self.daemons[node] = Daemon.mount(host, abi=abi, probe=self.checker, primary=host.primary())
        self.abi = abi
        self.made: list[str] = []
        self.counter = 0

    # -- steps ----------------------------------------------------------------------------------

    def mkdir(self, parent: int) -> None:
        dirs = [""] + [p for p in self.made if p in self.master.expected.dirs]
        path = f"{dirs[parent % len(dirs)]}/d{self.counter}".lstrip("/")
        self.counter += 1
        self.master.mkdir(path)
        self.made.append(path)

    def create(self, size: int, devindex: int, striped: bool) -> None:
        ndev = len(self.master.table)
        path = f"f{self.counter}"
        self.counter += 1
        try:
            if striped and ndev > 1:
                self.master.create(path, size, interleave=Interleave(min(ndev, 3), 2 * MiB, tuple(range(ndev))))
            else:
                self.master.create(path, size, devindex=devindex % ndev)
        except Exception as e:  # noqa: BLE001 - a full device or log: the master just stops here
            if getattr(e, "errno", None) is None:
                raise
            return
        self.made.append(path)

    def add_device(self) -> None:
        n = len(self.master.table)
        if n < NDEV:
            self.master.attach(self.bufs[n], DEV_SIZE, self.uuids[n])

    def logplay(self, node: str) -> None:
        self.daemons[node].refresh()

    def restart(self, node: str) -> None:
        """The client's daemon dies (all its state is lost) and a new one mounts the same memory:
        its replay must give the master's namespace again (checked by `check`)."""
        old = self.daemons[node]
        self.daemons[node] = Daemon.mount(old.host, abi=self.abi, probe=self.checker, primary=old.primary)
        if sorted(f.path for f in self.daemons[node].files()) != sorted(self.master.expected.files):
            raise InvariantViolation(Invariant.LOG_PREFIX, f"node {node}: after a restart the replay misses files")

    def read(self, node: str, pick: int) -> None:
        """A client reads one of the files it serves, judged by the oracle's read check: the
        model's verdict of the shared log, this node's expectation (its own device names and
        order), every range of the file against the device bytes, every lookup (the session's
        one checker, so IDX-CLUSTER holds across the nodes)."""
        d = self.daemons[node]
        files = [f for f in d.files()]
        if not files:
            return
        f = files[pick % len(files)]
        primary = self.bufs[0]
        expected = verdict(bytes(primary[:head_end(primary)]), DEV_SIZE)
        desc = dict(expected.namespace).get(f.path)
        if desc is None:
            raise InvariantViolation(Invariant.NS_CONFLICT, f"node {node}: {f.path} is served but not in the log",
                                     op="read", site="session")
        exp = Expectation.of(expected, node, {f"dax{k}.0": self.bufs[i] for k, i in enumerate(NODES[node])},
                             abi=self.abi)
        exp.install(self.checker)
        check_files([(f.path, desc)], exp, daemon_reader(d), self.checker)

    # -- the check after every step ----------------------------------------------------------

    def check(self) -> None:
        self.checker.expected = {d.index: d.uuid for d in self.master.table}
        master_files = self.master.expected.files
        for node, d in self.daemons.items():
            for f in d.files():
                want = master_files.get(f.path)
                if want is None or want.fmap != f.fmap or want.size != f.size:
                    raise InvariantViolation(Invariant.NS_CONFLICT, f"node {node}: {f.path} differs from the master's")
            table: Iterable[Daxdev] = d.state.table if d.state else []
            for dev in table:
                if dev.index >= len(self.master.table) or dev.uuid != self.master.table[dev.index].uuid:
                    raise InvariantViolation(Invariant.IDX_CLUSTER,
                                             f"node {node}: index {dev.index} is not the master's")
        self.checker.check()

    @property
    def lookups(self) -> Counts:
        """Every lookup judged so far, by class."""
        return self.checker.counts


class SessionMachine(RuleBasedStateMachine):
    """Hypothesis driver of a `Session`."""

    def __init__(self) -> None:
        super().__init__()
        self.s = Session()

    @rule(parent=st.integers(0, 8))
    def mkdir(self, parent: int) -> None:
        self.s.mkdir(parent)

    @rule(size=st.sampled_from([0, 1, 4096, 2 * MiB + 1, 3 * MiB]), devindex=st.integers(0, NDEV - 1),
          striped=st.booleans())
    def create(self, size: int, devindex: int, striped: bool) -> None:
        self.s.create(size, devindex, striped)

    @precondition(lambda self: len(self.s.master.table) < NDEV)
    @rule()
    def add_device(self) -> None:
        self.s.add_device()

    @rule(node=st.sampled_from(sorted(NODES)))
    def logplay(self, node: str) -> None:
        self.s.logplay(node)

    @rule(node=st.sampled_from(sorted(NODES)), pick=st.integers(0, 64))
    def read(self, node: str, pick: int) -> None:
        self.s.read(node, pick)

    @rule(node=st.sampled_from(sorted(NODES)))
    def restart(self, node: str) -> None:
        self.s.restart(node)

    @invariant()
    def consistent(self) -> None:
        self.s.check()


POOL = BufferPool()


def run_choices(data: bytes, max_steps: int = 24) -> Counts:
    """Atheris driver: the bytes choose the steps. Returns the lookups judged."""
    c = Choices(data)
    s = Session(pool=POOL)
    try:
        return _steps(c, s, max_steps)
    finally:
        POOL.give_back()


def _steps(c: Choices, s: Session, max_steps: int) -> Counts:
    for _ in range(c.int(1, max_steps)):
        step = c.int(0, 6)
        if step == 0:
            s.mkdir(c.int(0, 8))
        elif step == 1:
            s.create(c.pick([0, 1, 4096, 2 * MiB + 1, 3 * MiB]), c.int(0, NDEV - 1), c.bool())
        elif step == 2:
            s.add_device()
        elif step == 3:
            s.logplay(c.pick(sorted(NODES)))
        elif step == 6:
            s.restart(c.pick(sorted(NODES)))
        else:
            s.read(c.pick(sorted(NODES)), c.int(0, 64))
        s.check()
        if c.exhausted:
            break
    return s.lookups


def strategy() -> Any:
    return st.binary(min_size=1, max_size=96)
