"""What another node, or a crash, may find in shared memory while the master runs one operation.

The master's metadata writers record their stores, flushes and fences (`harness.famfs.shm.Recorder`).
This module turns one operation's record into the set of shared-memory states a client node may
read at any moment of it, which is also the set a crash of the master at that moment may leave
(the memory device keeps what reached it). docs/shared-memory.md has the model in full; in short:

* Memory is 64-byte lines. The master's stores go into its cache (through its store buffer, in
  program order: x86-TSO). A dirty line may be written back at any time (eviction), carrying the
  line as the cache holds it then; `flush` makes its write-back certain, and a later `fence`
  waits for it. So at any moment each line of shared memory holds one *version* of that line: its
  content after some prefix, in program order, of the stores to it, no older than the version it
  had when it was last flushed before a completed fence.
* A store is atomic when it is at most 16 bytes and aligned to its size (8-byte stores; the log
  counters' 16-byte store, single-copy atomic for aligned SSE/AVX stores on CPUs with AVX); a
  longer store (a memcpy) is a sequence of aligned 8-byte stores in ascending address order.
  Bytes within one atomic store are never torn; two atomic stores to one line may be seen one
  without the other only in program order.

Pruning, and why it is sound (every state removed is either impossible or equal to one kept):

1. Silent stores: a store that leaves its line's bytes as they were makes no new version (the
   state is the same bytes either way). mkfs's zeroing of already zeroed memory costs nothing.
2. Flushed and fenced lines: a line flushed before a completed fence is, at every later moment,
   at that version or a newer one, so the older versions are dropped from later states.
3. Lines are independent within an epoch (between two fences): nothing orders two write-backs,
   so the states of an epoch are exactly the product over lines of each line's admissible
   versions, and the product at the epoch's end contains every state of the epoch's middle
   (the admissible range only widens upwards until the next fence).
4. Epochs overlap: a state admissible in two epochs is counted and run once (a state of epoch
   e is new iff some line is past its newest version of epoch e-1).
5. Program order within a line: versions are prefixes of the line's stores, never other
   subsets, as one CPU's stores reach its cache in order and a write-back carries the line whole.

What this abstracts away: several master CPUs (one appender thread: famfs serializes appends
under a lock), non-temporal stores, a cache that hands a line over partially, and a reader that
reads different lines at different moments of the operation (readers here take one snapshot;
famfs's reader reads the counters first, and under the protocol everything they cover was
fenced before them, so later reads of those entries see them whole).

A client's cache: a node that read lines earlier may still hold them (CXL shared memory is not
coherent across hosts). `ClientDevice` is a node's view: shared memory with the lines it cached
at its previous logplay laid over it, until it invalidates them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

from harness.famfs.devices import DaxDevice
from harness.famfs.shm import LINE, WORD, Op

BLOCK = 4096                 # stores are compared with memory block by block first (zeroing is cheap)


@dataclass
class OpStates:
    """The shared-memory states of one operation. `lines` are the line numbers that change;
    `versions[k]` the contents line `lines[k]` goes through (index 0: what shared memory held
    before); `boxes` one (lo, hi) per epoch, each a tuple over `lines`; `final` the version of
    each line that the operation's flushes and fences guarantee at its end."""

    lines: list[int]
    versions: list[list[bytes]]
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]]
    final: tuple[int, ...]
    units: int = 0            # atomic stores that changed a line (each a version)
    silent: int = 0           # atomic stores that changed nothing (pruned, rule 1)
    flushes: int = 0
    fences: int = 0

    @property
    def naive(self) -> int:
        """States without pruning: any subset of the operation's atomic stores visible."""
        return 2 ** (self.units + self.silent)

    @property
    def distinct(self) -> int:
        """States the model admits (rules 1-5)."""
        total = 0
        prev_hi: tuple[int, ...] | None = None
        for lo, hi in self.boxes:
            total += _volume(lo, hi)
            if prev_hi is not None:
                total -= _volume(lo, tuple(min(h, p) for h, p in zip(hi, prev_hi, strict=True)))
            prev_hi = hi
        return total

    def all_states(self) -> Iterator[tuple[int, ...]]:
        """Every state once, epoch by epoch (use when `distinct` is small)."""
        prev_hi: tuple[int, ...] | None = None
        for lo, hi in self.boxes:
            for x in itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi, strict=True))):
                if prev_hi is None or any(v > p for v, p in zip(x, prev_hi, strict=True)):
                    yield x
            prev_hi = hi

    def corners(self) -> list[tuple[int, ...]]:
        """The structured states kept whatever the budget: each epoch's oldest and newest state,
        and the newest with one line held back at its oldest (a single late write-back)."""
        out: list[tuple[int, ...]] = []
        for lo, hi in self.boxes:
            out += [lo, hi]
            out += [hi[:k] + (lo[k],) + hi[k + 1:] for k in range(len(hi)) if lo[k] < hi[k]]
        seen: set[tuple[int, ...]] = set()
        return [x for x in out if not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]

    def sample(self, pick: Callable[[int], int], n: int) -> list[tuple[int, ...]]:
        """`n` states chosen by `pick(k) -> 0..k-1` (the fuzz input): an epoch, then each line's version."""
        out = []
        for _ in range(n):
            lo, hi = self.boxes[pick(len(self.boxes))]
            out.append(tuple(a + pick(b - a + 1) for a, b in zip(lo, hi, strict=True)))
        return out

    def contents(self, state: tuple[int, ...]) -> Iterator[tuple[int, bytes]]:
        """(byte offset, 64 bytes) of every changing line in `state`."""
        for line, vs, v in zip(self.lines, self.versions, state, strict=True):
            yield line * LINE, vs[v]


def _volume(lo: tuple[int, ...], hi: tuple[int, ...]) -> int:
    n = 1
    for a, b in zip(lo, hi, strict=True):
        if b < a:
            return 0
        n *= b - a + 1
    return n


def _units(offset: int, data: bytes) -> Iterator[tuple[int, bytes]]:
    """A store as its atomic pieces: itself if at most 16 bytes and aligned to its size, else
    aligned 8-byte words in ascending order (a memcpy)."""
    n = len(data)
    if n in (1, 2, 4, 8, 16) and offset % n == 0:
        yield offset, data
        return
    at = offset
    while at < offset + n:
        end = min(offset + n, (at // WORD + 1) * WORD)
        yield at, data[at - offset:end - offset]
        at = end


def states(shared: bytes | bytearray, before: bytes | bytearray, ops: list[Op]) -> OpStates:
    """The states of one operation: `shared` is what shared memory held before it, `before` what
    the master's cache held (equal when every earlier operation flushed and fenced all it wrote;
    a line where they differ is still dirty and may be written back during this operation),
    `ops` the operation's record."""
    cur = bytearray(before)
    versions: dict[int, list[bytes]] = {}
    for lo_b in range(0, len(shared) if shared != cur else 0, BLOCK):   # dirty lines carried over
        if shared[lo_b:lo_b + BLOCK] != cur[lo_b:lo_b + BLOCK]:
            for line in range(lo_b // LINE, min(len(shared), lo_b + BLOCK) // LINE):
                a, b = bytes(shared[line * LINE:(line + 1) * LINE]), bytes(cur[line * LINE:(line + 1) * LINE])
                if a != b:
                    versions[line] = [a, b]
    lo: dict[int, int] = {}
    flushed: dict[int, int] = {}
    epochs: list[tuple[dict[int, int], dict[int, int]]] = []   # (lo at start, hi at end) per epoch
    start_lo: dict[int, int] = {}
    out = OpStates([], [], [], ())
    for op in ops:
        if op[0] == "store":
            _, offset, data = op
            for block in range(offset - offset % BLOCK, offset + len(data), BLOCK):
                a, b = max(block, offset), min(block + BLOCK, offset + len(data))
                if cur[a:b] == data[a - offset:b - offset]:
                    out.silent += max(1, (b - a) // WORD)
                    continue
                for at, piece in _units(a, data[a - offset:b - offset]):
                    line = at // LINE
                    if cur[at:at + len(piece)] == piece:
                        out.silent += 1
                        continue
                    vs = versions.setdefault(line, [bytes(cur[line * LINE:(line + 1) * LINE])])
                    cur[at:at + len(piece)] = piece
                    vs.append(bytes(cur[line * LINE:(line + 1) * LINE]))
                    out.units += 1
        elif op[0] == "flush":
            _, offset, length = op
            out.flushes += 1
            for line in range(offset // LINE, (offset + max(length, 1) - 1) // LINE + 1):
                if line in versions:
                    flushed[line] = len(versions[line]) - 1
        else:
            out.fences += 1
            epochs.append((dict(start_lo), {k: len(v) - 1 for k, v in versions.items()}))
            for line, v in flushed.items():
                lo[line] = max(lo.get(line, 0), v)
            flushed.clear()
            start_lo = dict(lo)
    epochs.append((dict(start_lo), {k: len(v) - 1 for k, v in versions.items()}))
    out.lines = sorted(versions)
    out.versions = [versions[k] for k in out.lines]
    for e_lo, e_hi in epochs:
        box = (tuple(e_lo.get(k, 0) for k in out.lines), tuple(e_hi.get(k, 0) for k in out.lines))
        if not out.boxes or out.boxes[-1] != box:
            out.boxes.append(box)
    out.final = tuple(lo.get(k, 0) for k in out.lines)
    return out


def write_state(memory: bytearray, op: OpStates, state: tuple[int, ...]) -> None:
    for at, data in op.contents(state):
        memory[at:at + LINE] = data


class ClientDevice(DaxDevice):
    """A client node's view of the primary: shared memory (`memory`), with the lines this node
    cached at its previous logplay (`cached`: line -> content then) read instead of memory until
    `invalidate` drops them. The mapping the daemon reads (`seen`) is kept up to date."""

    def __init__(self, memory: bytearray, node: str = "client", name: str = "dax0.0"):
        self.memory = memory
        self.seen = bytearray(memory)
        self.cached: dict[int, bytes] = {}
        self.drops: list[tuple[int, int]] = []     # (offset, lines dropped) of each invalidate that dropped some
        super().__init__(self.seen, -1, len(self.seen), name=name, node=node, kind="buffer")  # type: ignore[arg-type]

    def show(self, op: OpStates, state: tuple[int, ...], cached: dict[int, bytes]) -> None:
        """Shared memory in `state` of `op`; this node holds `cached` (stale lines) over it."""
        for at, data in op.contents(state):
            self.memory[at:at + LINE] = data
            self.seen[at:at + LINE] = data
        self.cached = {}
        self.drops = []
        for line, data in cached.items():
            if self.memory[line * LINE:(line + 1) * LINE] != data:
                self.cached[line] = data
                self.seen[line * LINE:(line + 1) * LINE] = data

    def invalidate(self, offset: int, length: int) -> int:
        super().invalidate(offset, length)
        dropped = 0
        for line in range(offset // LINE, (offset + max(length, 1) - 1) // LINE + 1):
            if self.cached.pop(line, None) is not None:
                self.seen[line * LINE:(line + 1) * LINE] = self.memory[line * LINE:(line + 1) * LINE]
                dropped += 1
        if dropped:
            self.drops.append((offset, dropped))
        return dropped
