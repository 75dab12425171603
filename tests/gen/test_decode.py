"""gen.decode: escaped draws keep older streams' meaning and reach the extended values; every
corpus stream still decodes and builds."""
from __future__ import annotations

import itertools
import random

from harness import project
from harness.famfs.layout import ALLOC_UNIT
from harness.gen import decode
from harness.gen.spec import AddDaxdev, BufferPool, Create, build

ROOT = project.root()
POOL = BufferPool()


def test_escapable_matches_int_below_the_escape_range():
    for raw in range(253):
        a = decode.Choices(bytes([raw]))
        b = decode.Choices(bytes([raw]))
        assert a.escapable(0, 5, "k", 3) == (b.int(0, 5), None)
    assert decode.Choices(b"\xfd").escapable(0, 5, "k", 3) == (0, 0)
    assert decode.Choices(b"\xff").escapable(0, 5, "k", 3) == (0, 2)


def test_recording_maps_every_draw():
    c = decode.Choices(bytes(range(100)), record=True)
    decode.spec(c)
    spans = [(d.start, d.nbytes) for d in c.trace if d.nbytes]
    assert spans == sorted(spans) and all(a + n <= b for (a, n), (b, _) in itertools.pairwise(spans))
    assert any(d.label == "nops" for d in c.trace)


def escaped_streams(n: int = 600):
    """Random streams with one byte in eight in the escape range."""
    rng = random.Random(5)
    for _ in range(n):
        yield bytes(rng.choice((0xFD, 0xFE, 0xFF)) if rng.random() < 0.12 else rng.randrange(253)
                    for _ in range(200))


def test_extended_values_are_reached():
    seen: set[str] = set()
    for data in escaped_streams():
        s = decode.spec(decode.Choices(data))
        files = [op for op in s.ops if isinstance(op, Create)]
        paths = [op.path for op in s.ops if not isinstance(op, AddDaxdev)]
        seen |= {"wide" for op in files if len(op.strips) >= 15}
        seen |= {"chunk" for op in files if op.chunk > ALLOC_UNIT}
        seen |= {"last" for op in files if op.path.split("/")[-1].startswith("last")}
        seen |= {"off-chunk" for op in files if op.size % ALLOC_UNIT and op.size > ALLOC_UNIT}
        seen |= {"long" for p in paths if len(p.split("/")[-1]) >= 70}
        seen |= {"odd" for p in paths if p.split("/")[-1] in decode.ODD_NAMES}
        seen |= {"many" for _ in [0] if len(s.devices) > 4}
        if len(set(paths)) < len(paths) and "conflict" not in seen:
            seen.add("conflict")
            assert build(s, POOL, data="stamp").skipped
            POOL.give_back()
    assert seen == {"wide", "chunk", "last", "off-chunk", "long", "odd", "many", "conflict"}


def test_every_corpus_stream_decodes_and_builds():
    n = 0
    for target, kw in (("log_structured", {}), ("add_daxdev_order", {"min_devices": 2}),
                       ("missing_primary", {}), ("device_faults", {"min_devices": 2}),
                       ("mount_e2e", {"max_devices": 3, "dev_sizes": (16 << 20,), "primary_size": 16 << 20})):
        for p in sorted((ROOT / "corpora" / target).rglob("*"))[:25]:
            if p.is_file():
                s = decode.spec(decode.Choices(p.read_bytes()), **kw)
                build(s, POOL, data="stamp")
                POOL.give_back()
                n += 1
    assert n > 100


def test_a_reused_log_image_equals_a_fresh_one_whatever_came_before():
    """`log_image(reuse=True)` hands out one scratch buffer per size: each image must equal the
    freshly allocated one, however much the previous image wrote (a long log, then a short one)."""
    import random
    from pathlib import Path

    from harness.gen import decode
    rng = random.Random(3)
    inputs = [p.read_bytes() for p in sorted(Path("corpora/log_replay").glob("*")) if p.is_file()]
    rng.shuffle(inputs)
    for data in inputs + inputs[::-1]:
        fresh = decode.log_image(data)
        reused = decode.log_image(data, reuse=True)
        assert (fresh is None) == (reused is None)
        if fresh is not None:
            assert reused.device == fresh.device and reused.size == fresh.size


def test_reused_log_images_keep_a_bounded_number_of_buffers():
    """Mutated superblocks ask for a new buffer size nearly every input; the scratch buffers kept
    for `reuse` are the few sizes used last, not one per size ever seen (that grew log_replay's
    process without bound), and a size used again is still served clean."""
    from harness.famfs import layout as L
    from harness.gen import decode
    from pathlib import Path
    base = next(p.read_bytes() for p in sorted(Path("corpora/log_replay").glob("*"))
                if p.is_file() and decode.log_image(p.read_bytes()) is not None)
    sb = L.Superblock.decode(base)
    images = []
    for k in range(40):                            # the same image, its log region moved k pages on
        data = bytearray(base)
        at, size = L.field_span("superblock", "log_offset")
        data[at:at + size] = (sb.log_offset + 4096 * k).to_bytes(size, "little")
        images.append(bytes(data))                 # (log_image reads the superblock's fields, not its CRC)
    assert len({len(decode.log_image(d).device) for d in images}) == 40      # 40 sizes asked for
    for data in images + images[:3]:
        fresh = decode.log_image(data)
        reused = decode.log_image(data, reuse=True)
        assert fresh is not None and reused is not None and reused.device == fresh.device
        assert len(decode._SCRATCH) <= decode.SCRATCH_SIZES
