"""The shared-memory model (faults.shm), the master's flushes and fences, a client's stale cache."""
from __future__ import annotations

import errno
import itertools

import pytest

from harness.famfs.daemon import Daemon, DaemonError
from harness.famfs.devices import DaxDevice, DaxDeviceError
from harness.famfs.resolver import Resolver
from harness.famfs.image import Image
from harness.famfs.invariants import Invariant
from harness.famfs.layout import HEADER_SIZE, LOG_OFFSET
from harness.famfs.shm import Recorder
from harness.faults.shm import ClientDevice, states, write_state

SIZE = (2 << 20) + (64 << 10)
LOG = 8 << 10


def _brute(shared: bytes, ops: list) -> set[bytes]:
    """Every byte image of the changing region shared memory may hold at any moment, computed
    the slow way: after each operation, every line at any version between its flushed-and-fenced
    one and its newest (versions per 8-byte word, in program order)."""
    cur = bytearray(shared)
    versions: dict[int, list[bytes]] = {}
    lo: dict[int, int] = {}
    flushed: dict[int, int] = {}
    seen: set[tuple[tuple[int, bytes], ...]] = set()

    def snapshot() -> None:
        lines = sorted(versions)
        ranges = [range(lo.get(k, 0), len(versions[k])) for k in lines]
        for x in itertools.product(*ranges):
            seen.add(tuple((k, versions[k][v]) for k, v in zip(lines, x, strict=True)))

    for op in ops:
        if op[0] == "store":
            _, off, data = op
            step = len(data) if len(data) in (1, 2, 4, 8, 16) and off % len(data) == 0 else 8
            for at in range(off, off + len(data), step):
                piece = data[at - off:at - off + step]
                if cur[at:at + len(piece)] != piece:
                    line = at // 64
                    vs = versions.setdefault(line, [bytes(cur[line * 64:line * 64 + 64])])
                    cur[at:at + len(piece)] = piece
                    vs.append(bytes(cur[line * 64:line * 64 + 64]))
                snapshot()
        elif op[0] == "flush":
            for line in range(op[1] // 64, (op[1] + op[2] - 1) // 64 + 1):
                if line in versions:
                    flushed[line] = len(versions[line]) - 1
        else:
            for line, v in flushed.items():
                lo[line] = max(lo.get(line, 0), v)
            flushed.clear()
            snapshot()
    snapshot()
    every = sorted(versions)                              # lines untouched at a moment hold their old bytes
    base = {k: bytes(shared[k * 64:k * 64 + 64]) for k in every}
    return {b"".join(dict(s).get(k, base[k]) for k in every) for s in seen}


def _image() -> tuple[bytearray, Recorder, Image]:
    dev = bytearray(SIZE)
    rec = Recorder(dev)
    image = Image.mkfs([dev], [SIZE], log_len=LOG, alloc_unit=4096, port=rec, head_is_zero=True)
    rec.take()
    return dev, rec, image


def _model_images(st, shared: bytes) -> set[bytes]:
    out = set()
    for x in st.all_states():
        out.add(b"".join(st.versions[k][v] for k, v in enumerate(x)))
    assert len(out) == st.distinct
    return out


@pytest.mark.parametrize("op", ["mkdir", "add_daxdev", "two appends"])
def test_the_models_states_are_exactly_the_brute_force_set(op):
    dev, rec, image = _image()
    shared = bytes(dev)
    if op == "mkdir":
        image.mkdir("a")
    elif op == "add_daxdev":
        image.add_daxdev(b"\x11" * 16, 4 << 20)
    else:
        image.mkdir("a")
        image.mkdir("b")
    ops = rec.take()
    st = states(shared, shared, ops)
    assert _model_images(st, shared) == _brute(shared, ops)
    assert st.fences == 2 * (2 if op == "two appends" else 1) and st.flushes == st.fences
    assert st.naive > st.distinct > 1


def test_a_line_flushed_and_fenced_is_never_seen_older_and_silent_stores_make_no_state():
    buf = bytearray(256)
    rec = Recorder(buf)
    rec.store(0, b"\x01" * 8)
    rec.store(64, b"\x00" * 8)            # silent: zero over zero
    rec.flush(0, 8)
    rec.fence()
    rec.store(128, b"\x02" * 8)
    st = states(bytes(256), bytes(256), rec.take())
    assert st.lines == [0, 2] and st.silent >= 1
    every = list(st.all_states())
    assert (0, 0) in every and (1, 0) in every and (1, 1) in every and (0, 1) not in every
    assert st.final == (1, 0)             # line 2 was never flushed: only its old version is certain


def test_atomic_units_are_aligned_stores_of_up_to_16_bytes_else_8_byte_words():
    rec = Recorder(bytearray(128))
    rec.store(16, bytes(range(1, 17)))    # one aligned 16-byte store: one version
    rec.store(64, bytes(range(1, 25)))    # a 24-byte memcpy: three words
    st = states(bytes(128), bytes(128), rec.take())
    assert [len(v) for v in st.versions] == [2, 4]


def test_a_missing_counter_flush_leaves_the_entry_uncommitted_at_the_end():
    dev, rec, image = _image()
    shared = bytes(dev)
    image.mkdir("a")
    ops = [op for op in rec.take() if not (op[0] == "flush" and op[1] == LOG_OFFSET + 32)]
    st = states(shared, shared, ops)
    end = bytearray(shared)
    write_state(end, st, st.final)
    assert end[LOG_OFFSET + 40:LOG_OFFSET + 48] == bytes(8)            # next_index still 0 in memory
    assert dev[LOG_OFFSET + 40] == 1                                 # while the master's cache has 1


def test_client_device_reads_its_stale_lines_until_it_invalidates_them():
    memory = bytearray(4096)
    client = ClientDevice(memory)
    st = states(bytes(4096), bytes(4096), [("store", 64, b"\x07" * 8)])
    client.show(st, (1,), {1: bytes(64)})
    assert client.read(64, 8) == bytes(8)                             # the stale cached copy
    assert client.invalidate(0, 4096) == 1 and client.read(64, 8) == b"\x07" * 8
    assert client.invalidate(0, 4096) == 0


def test_a_running_client_re_reads_an_entry_whose_first_line_it_cached_empty():
    dev, rec, image = _image()
    image.mkdir("a")
    shared = bytearray(dev)
    client = ClientDevice(bytearray(shared))
    daemon = Daemon.mount(Resolver("c", [client]), primary=client, abi="push-fd")
    before = bytes(shared)
    image.mkdir("b")                                                  # entry 1 starts in entry 0's last line
    st = states(before, before, rec.take())
    start = LOG_OFFSET + HEADER_SIZE + 544
    cached = {start // 64: before[start // 64 * 64:start // 64 * 64 + 64]}
    client.show(st, st.final, cached)
    assert sorted(daemon.refresh().namespace.dirs) == ["a", "b"]
    assert any(offset >= start for offset, _ in client.drops)


def test_dax_device_ordering_calls_are_bounded_no_ops():
    buf = bytearray(4096)
    dev = DaxDevice.in_memory(buf, "dax0.0")
    dev.store(0, b"x")
    dev.flush(0, 64)
    dev.fence()
    assert dev.invalidate(0, 64) == 0 and buf[0:1] == b"x"
    with pytest.raises(DaxDeviceError):
        dev.flush(4090, 64)


def test_a_mount_refuses_a_file_system_re_made_under_it():
    dev, _, image = _image()
    f = image.create("f", 4096)
    node = DaxDevice.in_memory(dev, "dax0.0", node="c")
    daemon = Daemon.mount(Resolver("c", [node]), primary=node, abi="push-fd")
    ino = daemon.ino_of("f")
    assert bytes(daemon.read(ino, 0, 16)) == image.read(f, 0, 16)
    Image.mkfs([dev], [SIZE], log_len=LOG, alloc_unit=4096)
    for call in (lambda: daemon.read(ino, 0, 16), lambda: daemon.get_fmap(ino), daemon.refresh,
                 lambda: daemon.lookup(1, "f"), lambda: daemon.readdir(1)):
        with pytest.raises(DaemonError) as e:
            call()
        assert e.value.errno == errno.ESTALE and e.value.invariant == Invariant.FS_IDENTITY
    assert not daemon.kernel.fmaps and not daemon.devices


def test_an_append_is_entry_flush_fence_then_counters_flush_fence():
    dev, rec, image = _image()
    image.mkdir("a")
    ops = rec.take()
    assert [op[0] for op in ops] == ["store", "flush", "fence", "store", "flush", "fence"]
    entry, counters = ops[0], ops[3]
    assert len(entry[2]) == 544 and ops[1][1:] == (entry[1], 544)
    assert counters[1] == LOG_OFFSET + 32 and len(counters[2]) == 16 and ops[4][1:] == (counters[1], 16)
