"""image.py: the master's appender writes exactly the bytes its store program describes (the
program `faults` replays store by store), for every entry kind, and refuses a full log."""
from __future__ import annotations

import pytest

from harness.famfs import layout as L
from harness.famfs.errors import ImageError
from harness.famfs.image import Image

MiB = 1 << 20


def test_append_writes_what_the_store_program_writes():
    a, b = bytearray(8 * MiB), bytearray(8 * MiB)
    ia = Image.mkfs([a], log_len=16 << 10, uuids=[bytes(range(16))], fs_uuid=b"f" * 16, system_uuid=b"s" * 16)
    ib = Image.mkfs([b], log_len=16 << 10, uuids=[bytes(range(16))], fs_uuid=b"f" * 16, system_uuid=b"s" * 16)
    payloads = [(L.EntryType.MKDIR, L.Mkdir(1, 2, 0o755, b"d")),
                (L.EntryType.FILE, L.FileMeta(5, 2, 0, 0, 0o644, b"d/f",
                                              L.SimpleFmap.of([L.SimpleExtent(0, 4 * MiB, 2 * MiB)]))),
                (L.EntryType.ADD_DAXDEV, L.AddDaxdev(16 * MiB, b"u" * 16, 1)),
                (L.EntryType.FILE, L.FileMeta(3, 2, 0, 0, 0o600, b"s", L.InterleavedFmap.of(
                    2 * MiB, [L.SimpleExtent(0, 6 * MiB, 2 * MiB), L.SimpleExtent(1, 2 * MiB, 2 * MiB)])))]
    for etype, payload in payloads:
        for off, data in filter(None, ib.log.stores(etype, payload)):
            b[off:off + len(data)] = data
        ib.log.next_index += 1
        assert ia.log.append(etype, payload) == ib.log.next_index - 1
        assert a == b
    head = L.LogHeader.decode(a, ia.sb.log_offset)
    assert head.next_index == head.next_seqnum == len(payloads)
    entry = L.LogEntry.decode(a, ia.sb.log_offset + L.HEADER_SIZE + L.ENTRY_SIZE)
    assert entry.crc == entry.computed_crc() and entry.payload.relpath == b"d/f"


def test_append_refuses_a_full_log():
    dev = bytearray(4 * MiB)
    image = Image.mkfs([dev], log_len=L.HEADER_SIZE + 2 * L.ENTRY_SIZE)
    image.mkdir("a")
    image.mkdir("b")
    with pytest.raises(ImageError):
        image.mkdir("c")
