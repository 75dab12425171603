"""wire.py: GET_FMAP / GET_DAXDEV / backing-map bytes per ABI generation, written out by hand here."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from harness.famfs import wire
from harness.famfs.errors import FamfsError

GENS = list(wire.ABIS.values())


def test_generations_and_their_numbers():
    assert list(wire.ABIS) == ["pull-name", "pull-devt", "push-fd", "backing-id"]
    for g in GENS:
        assert g.get_fmap_opcode == 54 and g.init_flag == 1 << 43
    assert wire.abi("pull-devt").get_daxdev_opcode == 55 and wire.abi("push-fd").get_daxdev_opcode is None
    assert (wire.abi("pull-name").nslots, wire.abi("push-fd").nslots) == (24, 64)
    with pytest.raises(FamfsError) as e:
        wire.abi("nope")
    assert "pull-devt" in str(e.value)


def test_simple_reply_bytes():
    msg = wire.FmapMessage(wire.FILE_REG, wire.EXT_SIMPLE, 5 << 20,
                           extents=(wire.WireSimple(0, 0xA00000, 0x200000), wire.WireSimple(3, 0xC00000, 0x400000)))
    want = (struct.pack("<BBHIIIQQ", 0, 0, 1, 0, 2, 0, 5 << 20, 0)
            + struct.pack("<IIQQ", 0, 0, 0xA00000, 0x200000) + struct.pack("<IIQQ", 3, 0, 0xC00000, 0x400000))
    assert wire.encode_fmap(msg, wire.abi("pull-devt")) == want                 # V-series: fmap_size 0
    filled = wire.encode_fmap(msg, wire.abi("push-fd"))
    assert filled[12:16] == struct.pack("<I", len(want)) and filled[16:] == want[16:]


def test_interleave_devindex_is_a_u32_at_offset_0():
    """The C daemon writes strips as (u16 tag, u16 devindex): the kernel then reads index 2 as
    2 << 16. Our bytes put the u32 devindex at offset 0 of every strip."""
    strips = tuple(wire.WireSimple(i, 0x1000000 * (i + 1), 0x400000) for i in (0, 1, 2))
    msg = wire.FmapMessage(wire.FILE_REG, wire.EXT_INTERLEAVE, 6 << 20,
                           interleaved=(wire.WireInterleave(3, 0x200000, 6 << 20, strips),))
    data = wire.encode_fmap(msg, wire.abi("pull-name"))
    want = (struct.pack("<BBHIIIQQ", 0, 0, 1, 1, 1, 0, 6 << 20, 0) + struct.pack("<IIQQ", 3, 0x200000, 6 << 20, 0)
            + b"".join(struct.pack("<IIQQ", i, 0, 0x1000000 * (i + 1), 0x400000) for i in (0, 1, 2)))
    assert data == want
    assert struct.unpack_from("<I", data, 32 + 24 + 2 * 24)[0] == 2


def test_daxdev_out_per_generation():
    reply = wire.DaxdevReply(5, b"dax5.0", (250 << 8) | 3)
    devt = wire.encode_daxdev_out(reply, wire.abi("pull-devt"))
    assert len(devt) == 280
    assert struct.unpack_from("<HHIQ", devt) == (5, 0, 0, (250 << 8) | 3)
    assert devt[24:30] == b"dax5.0" and devt[30] == 0
    name = wire.encode_daxdev_out(reply, wire.abi("pull-name"))
    assert struct.unpack_from("<Q", name, 8)[0] == 0                            # no dev_t in the V-series
    assert wire.decode_daxdev_out(devt, wire.abi("pull-devt")) == reply
    assert wire.decode_daxdev_in(wire.encode_daxdev_in(7)) == 7


def test_backing_map_carries_the_index_only_for_push_fd():
    m = wire.BackingMap(9, 0, 4)
    assert wire.encode_backing_map(m, wire.abi("push-fd")) == struct.pack("<iIQ", 9, 0, 4)
    assert wire.encode_backing_map(m, wire.abi("backing-id")) == struct.pack("<iIQ", 9, 0, 0)


def test_unrepresentable_values_are_refused_not_truncated():
    big_chunk = wire.FmapMessage(0, 1, 1, interleaved=(wire.WireInterleave(1, 1 << 32, 1,
                                                                           (wire.WireSimple(0, 0, 1 << 32),)),))
    with pytest.raises(FamfsError):
        wire.encode_fmap(big_chunk, wire.abi("push-fd"))
    with pytest.raises(FamfsError):
        wire.encode_fmap(wire.FmapMessage(0, 0, 1, extents=(wire.WireSimple(1 << 32, 0, 1),)), wire.abi("push-fd"))


@pytest.mark.parametrize("gen", GENS, ids=[g.name for g in GENS])
def test_truncation_at_every_length_is_a_typed_error(gen):
    strips = tuple(wire.WireSimple(i, 0x200000 * (i + 1), 0x200000) for i in range(3))
    data = wire.encode_fmap(wire.FmapMessage(0, 1, 1, interleaved=(wire.WireInterleave(3, 0x200000, 1, strips),)), gen)
    for n in range(len(data)):
        with pytest.raises(FamfsError):
            wire.decode_fmap(data[:n], gen)
    over = bytearray(data)
    over[8:12] = struct.pack("<I", 1 << 30)                                     # nextents far past the data
    with pytest.raises(FamfsError):
        wire.decode_fmap(bytes(over), gen)


simple = st.builds(wire.WireSimple, st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 63), st.integers(0, 2 ** 63))
messages = st.one_of(
    st.builds(lambda t, s, e: wire.FmapMessage(t, 0, s, extents=tuple(e)), st.integers(0, 2), st.integers(0, 2 ** 63),
              st.lists(simple, max_size=6)),
    st.builds(lambda t, s, ies: wire.FmapMessage(t, 1, s, interleaved=tuple(ies)), st.integers(0, 2),
              st.integers(0, 2 ** 63),
              st.lists(st.builds(lambda c, n, ss: wire.WireInterleave(len(ss), c, n, tuple(ss)),
                                 st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 63), st.lists(simple, max_size=5)),
                       max_size=3)))


@settings(max_examples=200, deadline=None)
@given(messages, st.sampled_from(GENS))
def test_round_trip(msg, gen):
    data = wire.encode_fmap(msg, gen)
    back = wire.decode_fmap(data, gen)
    assert (back.file_type, back.ext_type, back.file_size, back.extents, back.interleaved) == \
        (msg.file_type, msg.ext_type, msg.file_size, msg.extents, msg.interleaved)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(GENS))
def test_arbitrary_replies_decode_or_fail_typed(data, gen):
    try:
        wire.decode_fmap(data, gen)
    except FamfsError:
        pass


@pytest.mark.parametrize("offered, rawio, want", [(True, True, True), (True, False, False), (False, True, False),
                                                  (False, False, False)])
def test_init_negotiation(offered, rawio, want):
    gen = wire.abi("pull-devt")
    assert wire.negotiate_init(gen, gen.init_flag if offered else 0, rawio) is want


def test_unroll_matches_the_striping_rule():
    strips = (wire.WireSimple(0, 0x1000000, 0x400000), wire.WireSimple(1, 0x2000000, 0x400000))
    msg = wire.FmapMessage(0, 1, 5 << 20, interleaved=(wire.WireInterleave(2, 1 << 20, 5 << 20, strips),))
    out = wire.unroll(msg).extents
    assert [(e.devindex, e.offset, e.len) for e in out] == [
        (0, 0x1000000, 1 << 20), (1, 0x2000000, 1 << 20), (0, 0x1100000, 1 << 20), (1, 0x2100000, 1 << 20),
        (0, 0x1200000, 1 << 20)]
