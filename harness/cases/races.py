"""The race cases: the daxdev table's publish steps and lazy discovery against readers on weak
memory (publish_order, discovery_race), and a client replaying every state of a master's torn
appends (log_tail_race); each schedule comes from the input."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid
from harness.famfs.invariants import Invariant
from harness.famfs.replay import replay
from harness.gen import decode
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker, Why
from harness.cases.node import POOL

if TYPE_CHECKING:
    from harness.faults.races import RaceResult


def publish_order_case(data: bytes, *, barrier: bool = True, valid_first: bool = False) -> Counts:
    """The daxdev table's publish steps against readers, on weak memory, schedule from `data`:
    a reader that sees a valid slot must see all of it (TBL-PUBLISH); a lookup may fail only
    while the slot is being published."""
    from harness.faults.races import PUBLISH_EXPECTED, publish_case
    from harness.faults.schedule import byte_chooser
    checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1],
                            justify={"n": {1: Why.PUBLISHING}}, site="race/publish")
    c = decode.Choices(data[:2])
    _no_deadlock(publish_case(byte_chooser(data[2:]), checker, readers=c.int(1, 3), reads=c.int(1, 4),
                              barrier=barrier, valid_first=valid_first), "race/publish")
    checker.check()
    return checker.counts


def discovery_race_case(data: bytes, *, barrier: bool = True, locking: bool = True) -> Counts:
    """Readers first-touching undiscovered indices through lazy discovery, one maybe failing its
    GET_DAXDEV: lookups right or cleanly failing (only the failing reader's index may fail),
    reads returning the right device's bytes. An odd first byte runs teardown against readers
    instead (the table's lock; lookups may fail only because of the teardown). Every CPU must
    finish (no reader left waiting on the lock)."""
    from harness.faults.races import DISCOVERY_EXPECTED, PUBLISH_EXPECTED, FakeDev, discovery_case, teardown_case
    from harness.faults.schedule import byte_chooser
    if data[:1] and data[0] & 1:
        checker = LookupChecker(expected=PUBLISH_EXPECTED[0], names=PUBLISH_EXPECTED[1],
                                justify={"n": {1: Why.TEARDOWN}}, site="race/teardown")
        _no_deadlock(teardown_case(byte_chooser(data[2:]), checker, readers=1 + (data[1] % 3 if len(data) > 1 else 0),
                                   locking=locking), "race/teardown")
        checker.check()
        return checker.counts
    # byte 0: bit 0 chose this branch, bit 1 adds a third reader, bits 2-7 its index; bytes 1-2 the
    # first two readers' indices; byte 3 whose GET_DAXDEV fails; the rest is the schedule
    head = data[0] if data else 0
    c = decode.Choices(data[1:4])
    files = (c.int(1, 3), c.int(1, 3), *((1 + (head >> 2) % 3,) if head & 2 else ()))
    n = len(files)
    fail_for = c.pick([None, None, "cpu1", "cpu2", "cpu3"])
    failing = {files[int(fail_for[3:]) - 1]: Why.FAULT} if fail_for and int(fail_for[3:]) <= n else {}
    checker = LookupChecker(expected=DISCOVERY_EXPECTED[0], names=DISCOVERY_EXPECTED[1], justify={"n": failing},
                            site="race/discovery")
    r = discovery_case(byte_chooser(data[4:]), checker, files=files, fail_for=fail_for, barrier=barrier)
    _no_deadlock(r, "race/discovery")
    checker.check()
    for k, index in enumerate(files):
        kind, value = r.outcomes[f"cpu{k + 1}"]           # (the scheduler ran every reader to its end)
        if kind == "ok" and value != FakeDev(f"dax{index}.0", 0x0F00 + index).read(0, 4096):
            raise InvariantViolation(Invariant.DATA, f"cpu{k + 1} read another device's bytes for index {index}",
                                     op="read", site="race/discovery")
        if kind == "error" and (value.errno != errno.EIO or fail_for != f"cpu{k + 1}"):
            # the kernel's own check names what broke (a half-published slot is TBL-PUBLISH)
            named = value.invariant if value.invariant == Invariant.TBL_PUBLISH else Invariant.IDX_LOOKUP
            raise InvariantViolation(named, f"cpu{k + 1}: read of index {index} failed with errno "
                                            f"{value.errno} ({value.message}); only a clean EIO of the reader "
                                            "whose GET_DAXDEV fails is allowed", op="read", site="race/discovery")
    return checker.counts


def _no_deadlock(r: RaceResult, site: str) -> None:
    """Every CPU of a race finishes: readers left waiting on the table's lock with nothing able
    to release it never return their lookup (IDX-LOOKUP)."""
    if r.deadlock:
        raise InvariantViolation(Invariant.IDX_LOOKUP, f"{', '.join(r.deadlock)} wait for the table's lock and "
                                                       "nothing can release it: their lookups never return",
                                 op="lookup", site=site)


def log_tail_case(data: bytes, *, counter_first: bool = False, check_crc: bool = True) -> int:
    """A master appends a short workload while a client replays every state the weak memory can
    show it (faults.logtail). The client must never apply a partial entry, never see next_index
    cover an incomplete entry (LOG-PREFIX), and must replay everything once all is visible."""
    from harness.famfs.image import Image
    from harness.famfs.layout import AddDaxdev, EntryType, FileMeta, Mkdir, SimpleExtent, SimpleFmap
    from harness.faults.logtail import apply, visible_states
    c = decode.Choices(data)
    dev = POOL.take(24 << 20)
    try:
        image = Image.mkfs([dev], log_len=16 << 10)
        image.log.counter_first = counter_first
        committed: list[str] = []
        for k in range(c.int(1, 3)):
            kind = c.int(0, 2)
            op: tuple[EntryType, Mkdir | FileMeta | AddDaxdev]
            if kind == 0:
                op = (EntryType.MKDIR, Mkdir(0, 0, 0o755, f"d{k}".encode()))
            elif kind == 1:
                op = (EntryType.FILE, FileMeta(4096, 2, 0, 0, 0o644, f"f{k}".encode(),
                                               SimpleFmap.of([SimpleExtent(0, (4 + 2 * k) << 20, 2 << 20)])))
            else:
                op = (EntryType.ADD_DAXDEV, AddDaxdev(16 << 20, Uuid(bytes([k + 1]) * 16), len(committed) + 1))
            program = image.log.stores(*op)
            head = bytes(dev[:(2 << 20) + (16 << 10)])
            for state in visible_states(program):
                seen = apply(bytearray(head), state)
                try:
                    r = replay(seen, device_size=len(dev), check_crc=check_crc)
                except FamfsError as e:
                    raise InvariantViolation(Invariant.LOG_HEADER,
                                             f"append {k}: mid-append state unusable: {e}") from None
                applied = [e for e in range(r.entries_read) if not any(x.entry == e for x in r.rejections)]
                if r.stopped_at is not None:
                    raise InvariantViolation(Invariant.LOG_PREFIX, f"append {k}: the reader saw next_index cover an "
                                                                   f"incomplete entry {r.stopped_at}")
                names = sorted([*r.namespace.dirs, *r.namespace.files])
                body = op[1]
                allowed = ([committed, sorted(committed + [body.relpath.decode()])]
                           if not isinstance(body, AddDaxdev) else [committed])
                if names not in allowed or len(applied) > k + 1:
                    raise InvariantViolation(Invariant.LOG_PREFIX, f"append {k}: reader applied {names}, "
                                                                   f"committed {committed}")
            image.log.append(*op)
            if not isinstance(op[1], AddDaxdev):
                committed = sorted(committed + [op[1].relpath.decode()])
        final = replay(dev, check_crc=check_crc)
        if sorted([*final.namespace.dirs, *final.namespace.files]) != committed:
            raise InvariantViolation(Invariant.LOG_PREFIX, "the complete log does not replay every entry")
        return 0
    finally:
        POOL.give_back()
