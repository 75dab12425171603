"""How the master writes shared memory: stores, cache-line flushes and fences, as explicit operations.

famfs's metadata lives in memory that other hosts map. A store of the master reaches the other
hosts only once its cache line is written back to the memory device; famfs's protocol (famfs issue
#59) is: flush (CLWB / clflushopt) every line written, fence (sfence) so the flushes complete, and
publish the log's counters last, in the same way. Everything here that writes famfs metadata on
the master (`image.mkfs`, `image.LogWriter`, ADD_DAXDEV, the superblock) writes through a `Port`,
so the flushes and fences famfs issues are calls the port sees:

* `store(offset, data)`: the CPU's stores (a memcpy: 8-byte stores in ascending order);
* `flush(offset, length)`: write back every 64-byte line that [offset, offset+length) touches;
* `fence()`: order: every flush issued before it has completed before any store after it.

A client reading shared memory may hold stale lines in its own cache (CXL shared memory is not
kept coherent across hosts): `invalidate(offset, length)` drops them, so the next read comes from
the device. The daemon invalidates the log header before each logplay, and an entry's lines
before re-reading it after a CRC mismatch (`daemon.Daemon.refresh`).

Backends:

* `Direct(buf)`: stores land in the buffer at once; flush, fence and invalidate do nothing. That
  is exact for memory one host shares with itself (a bytearray, a memfd or a file mapping: the
  page cache is coherent) and is the default everywhere.
* `Recorder(buf)`: `Direct` plus a list of every operation, in program order (`ops`), for the
  fuzzing side's memory model (`harness.faults.shm`), which enumerates the states another node
  or a crash may leave from that list.
* `DaxDevice.flush` / `fence` / `invalidate` (`devices.py`): the same three calls on a device.
  On emulated backends they are no-ops (coherent memory). On a real devdax mapping Python has no
  cache-line flush instruction (no CLWB, clflushopt, sfence in the standard library) and msync is
  refused by devdax (EINVAL), so they are no-ops too: a real single-host devdax mapping is
  coherent for every process on that host, which is all this project's real-DAX lane runs;
  cross-host visibility on real CXL memory is what the model, not the real lane, checks.
"""
from __future__ import annotations

from typing import Protocol, Union

LINE = 64                    # cache-line size: the unit a flush writes back and a write-back carries
WORD = 8                     # the largest store the model keeps atomic (an aligned 8-byte store)

Buffer = Union[bytearray, memoryview]
Op = tuple  # ("store", offset, bytes) | ("flush", offset, length) | ("fence",)


class Port(Protocol):
    """What the master's metadata writers write through."""

    def store(self, offset: int, data: bytes) -> None: ...

    def flush(self, offset: int, length: int) -> None: ...

    def fence(self) -> None: ...


class Direct:
    """Stores straight into `buf`; flush and fence are no-ops (coherent memory)."""

    __slots__ = ("buf",)

    def __init__(self, buf: Buffer):
        self.buf = buf

    def store(self, offset: int, data: bytes) -> None:
        self.buf[offset:offset + len(data)] = data

    def flush(self, offset: int, length: int) -> None:
        return None

    def fence(self) -> None:
        return None


class Recorder(Direct):
    """`Direct`, keeping every operation in program order in `ops` (stores keep their bytes)."""

    __slots__ = ("ops",)

    def __init__(self, buf: Buffer):
        super().__init__(buf)
        self.ops: list[Op] = []

    def store(self, offset: int, data: bytes) -> None:
        self.ops.append(("store", offset, bytes(data)))
        self.buf[offset:offset + len(data)] = data

    def flush(self, offset: int, length: int) -> None:
        self.ops.append(("flush", offset, length))

    def fence(self) -> None:
        self.ops.append(("fence",))

    def take(self) -> list[Op]:
        """The operations recorded since the last `take`."""
        ops, self.ops = self.ops, []
        return ops


def port_of(buf: Buffer, port: Port | None) -> Port:
    return port if port is not None else Direct(buf)
