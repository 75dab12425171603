"""The wire case: the kernel side parses one GET_FMAP reply under one ABI generation; acceptance must
match `oracle.wire_rules`, and reads through the accepted map must return the bytes the reply's
extents give, or fail cleanly (fmap_wire)."""
from __future__ import annotations

import errno
from dataclasses import dataclass

from harness.famfs import wire
from harness.famfs.daemon import DaemonError
from harness.famfs.devices import DaxDevice
from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid
from harness.famfs.invariants import Invariant
from harness.famfs.kernel import KernelError, KernelMount
from harness.gen.spec import stamp
from harness.oracle.invariants import InvariantViolation
from harness.oracle.lookups import Counts, LookupChecker
from harness.oracle import wire_rules
from harness.oracle.wire_rules import reasons as wire_reasons


class _WireServer:
    """A daemon stand-in for `wire_case`: replies `reply` to GET_FMAP, and GET_DAXDEV correctly for
    the node's present devices."""

    def __init__(self, reply: bytes, devices: list[DaxDevice], abi: wire.Abi):
        self.reply, self.devices, self.abi = reply, devices, abi

    def get_fmap(self, nodeid: int) -> bytes:
        return self.reply

    def get_daxdev(self, index: int) -> bytes:
        if index >= len(self.devices):
            raise DaemonError.undefined(index, len(self.devices))
        d = self.devices[index]
        return wire.encode_daxdev_out(wire.DaxdevReply(index, d.name.encode(), d.devno), self.abi)


_WIRE_DEVICES: list[bytearray] = []


def wire_case(abi_byte: int, reply: bytes) -> Counts:
    """The kernel side parses `reply` as a GET_FMAP reply under ABI generation `abi_byte % 4`;
    acceptance must match oracle.wire_rules; a read at each of a few offsets must return the bytes
    the reply's extents give (computed by oracle.wire_rules from the raw reply, read off the
    stamped devices) or fail with the clean errno of the first piece that cannot be read (an
    index no device answers, a strip too short, past a device's end, a push-fd file marked bad);
    every lookup is judged (under backing-id, by the kernel ids the three opens got)."""
    gen = list(wire.ABIS.values())[abi_byte % len(wire.ABIS)]
    if not _WIRE_DEVICES:
        for i in range(3):
            buf = bytearray(16 << 20)
            stamp(buf, 0, len(buf), 0x1111 * (i + 1))
            _WIRE_DEVICES.append(buf)
    devices = [DaxDevice.in_memory(b, f"dax{i}.0", node="w") for i, b in enumerate(_WIRE_DEVICES)]
    uuids = {i: Uuid(i.to_bytes(16, "big")) for i in range(3)}
    slot_of = {i: i for i in range(3)}                      # wire index -> which device's slot
    if gen.registration == wire.Registration.BACKING_ID:
        slot_of = {i + 1: i for i in range(3)}              # ids 1, 2, 3 in open order; 0 never
    checker = LookupChecker(expected={k: uuids[i] for k, i in slot_of.items()},
                            names={"w": {d.name: uuids[i] for i, d in enumerate(devices)}}, site=f"wire/{gen.name}")
    kernel = KernelMount(_NoUuidHost("w", devices), _WireServer(reply, devices, gen), gen, probe=checker)
    kernel.mount()
    for i, d in enumerate(devices):
        if gen.registration == wire.Registration.PUSH_FD:
            kernel.daxdev_open(d, i)
        elif gen.registration == wire.Registration.BACKING_ID:
            kernel.backing_open(d)
    must_refuse = wire_reasons(reply, gen)
    try:
        kf = kernel.fmap(5)
    except KernelError as e:
        if not must_refuse:
            raise InvariantViolation(Invariant.FMAP_SHAPE, f"{gen.name} kernel refused a valid reply: {e}",
                                     op="fmap", site=f"wire/{gen.name}") from None
        checker.check()
        return checker.counts
    if must_refuse:
        raise InvariantViolation(Invariant.FMAP_SHAPE, f"{gen.name} kernel accepted a reply it must refuse: "
                                                       f"{', '.join(must_refuse)}", op="fmap", site=f"wire/{gen.name}")
    bad = gen.registration == wire.Registration.PUSH_FD and any(k not in slot_of
                                                                for k in wire_rules.file_indices(reply))
    size = kf.file_size
    form = "simple" if kf.message.ext_type == wire.EXT_SIMPLE else "interleave"
    for off in sorted({0, 1, size // 2, max(size - 1, 0), 4096, 2 << 20, 5 << 20}):
        if off < size:
            _wire_read(kernel, f"{gen.name}/{form}", reply, off, slot_of, bad, checker)
    checker.check()
    return checker.counts


def _wire_read(kernel: KernelMount, gen: str, reply: bytes, off: int, slot_of: dict[int, int], bad: bool,
               checker: LookupChecker) -> None:
    """One read of `wire_case`, judged against the oracle's own runs of the reply (its lookups
    first, so a wrong device is named as such before its bytes)."""
    site = f"wire/{gen}"
    want: list[bytes] = []
    allowed: frozenset[int] = frozenset()
    if bad:                                                 # push-fd: an index never pushed
        allowed = frozenset({errno.EIO})
    else:
        for run in wire_rules.read_runs(reply, off, 4096):
            if run is None or run[0] not in slot_of:       # unmapped, or no device answers the index
                allowed = frozenset({errno.EIO})
                break
            buf = _WIRE_DEVICES[slot_of[run[0]]]
            if run[1] + run[2] > len(buf):                 # past the device's end
                allowed = frozenset({errno.ERANGE, errno.EIO})
                break
            want.append(bytes(buf[run[1]:run[1] + run[2]]))
    try:
        got = kernel.read(5, off, 4096)
    except FamfsError as e:
        checker.check()
        if e.errno not in allowed:
            why = "every piece of it is mapped on a present device" if not allowed else f"not with errno {e.errno}"
            raise InvariantViolation(Invariant.DATA if not allowed else Invariant.IDX_LOOKUP,
                                     f"{gen}: read at {off:#x} failed ({e}): {why}", op="read", site=site) from None
        return
    checker.check()
    if allowed:
        raise InvariantViolation(Invariant.IDX_LOOKUP, f"{gen}: read at {off:#x} returned {len(got)} bytes, but a "
                                                       "piece of it cannot be read (unmapped or no device)",
                                 op="read", site=site)
    expect = b"".join(want)
    if got != expect:
        raise InvariantViolation(Invariant.DATA, f"{gen}: read at {off:#x}: {len(got)} bytes differ from the "
                                                 f"{len(expect)} the reply's extents give", op="read", site=site)


@dataclass
class _NoUuidHost:
    """The kernel's view of the node's /dev for `wire_case`: by name and by dev_t only."""

    node: str
    devices: list[DaxDevice]

    def by_name(self, name: str) -> DaxDevice | None:
        return next((d for d in self.devices if d.name == name), None)

    def by_devno(self, devno: int) -> DaxDevice | None:
        return next((d for d in self.devices if d.devno == devno), None)
