"""replay.py: each invariant of docs/architecture.md's "Format and replay" and "index model" lists has an
image that triggers exactly it; the C implementation's bug classes (docs/famfs-format.md section 6) gives
typed rejections; replay semantics (skip vs stop); generated images replay to what was built;
and no bytes whatever make replay raise anything but a typed error."""
from __future__ import annotations

import errno
import uuid

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.famfs import layout as L
from harness.famfs.errors import FamfsError
from harness.famfs.image import Image, Interleave, pattern
from harness.famfs.replay import replay
from harness.gen.corrupt import set_field
from harness.gen.spec import build
from harness.gen.strategies import specs

MiB = 1 << 20
LOG_LEN = 64 << 10
PRIMARY = uuid.UUID(int=0xAA).bytes
SECOND = uuid.UUID(int=0xBB).bytes


def image(ndev: int = 2) -> tuple[Image, list[bytearray]]:
    """A primary (+ secondaries added in order), a dir, and a file on each device."""
    devs = [bytearray(16 * MiB) for _ in range(ndev)]
    img = Image.mkfs(devs, uuids=[PRIMARY, SECOND, uuid.UUID(int=0xCC).bytes][:ndev], log_len=LOG_LEN)
    img.mkdir("d")
    for k in range(ndev):
        img.create(f"d/f{k}", 3 * MiB, devindex=k)
    return img, devs


def raw_file(img: Image, path: bytes, size: int, fmap: L.Fmap) -> int:
    return img.log.append(L.EntryType.FILE, L.FileMeta(size, 2, 0, 0, 0o644, path, fmap))


def one(dev: bytearray, **kw):
    """Replay and return the only rejection (the test image must trigger exactly one)."""
    r = replay(dev, **kw)
    assert len(r.rejections) == 1, r.rejections
    return r.rejections[0]


def image_error(dev: bytearray, **kw) -> FamfsError:
    with pytest.raises(FamfsError) as e:
        replay(dev, **kw)
    return e.value


E = L.SimpleExtent

# -- image-level: SB-VALID, IDX-PRIMARY, LOG-HEADER ---------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("magic", 0x1234), ("version", 47), ("alloc_unit", 8192), ("log_len", 0x10), ("log_offset", 0x10),
    ("log_len", 1 << 40)])
def test_sb_valid(field, value):
    _, devs = image()
    set_field(devs[0], "superblock", field, value)
    e = image_error(devs[0])
    assert (e.invariant, e.errno) == ("SB-VALID", errno.EINVAL)


def test_sb_valid_bad_crc_and_short_device():
    _, devs = image()
    devs[0][50] ^= 1
    assert image_error(devs[0]).invariant == "SB-VALID"
    assert image_error(bytearray(100)).invariant == "SB-VALID"


def test_idx_primary_secondary_handed_in_as_primary():
    _, devs = image()
    e = image_error(devs[1])
    assert (e.invariant, e.errno) == ("IDX-PRIMARY", errno.ENODEV)


def test_idx_primary_nil_device_uuid():
    _, devs = image()
    set_field(devs[0], "superblock", "dev_uuid", bytes(16))
    assert image_error(devs[0]).invariant == "IDX-PRIMARY"


def test_idx_primary_add_daxdev_claims_index_0():
    img, devs = image()
    img.add_daxdev(uuid.UUID(int=0xDD).bytes, 16 * MiB, index=0)
    e = one(devs[0])
    assert (e.invariant, e.errno, e.entry) == ("IDX-PRIMARY", errno.EINVAL, img.log.next_index - 1)


@pytest.mark.parametrize("field, value", [
    ("magic", 7), ("len", 1 << 20), ("last_index", 5), ("next_index", 1 << 62), ("next_seqnum", 3)])
def test_log_header(field, value):
    _, devs = image()
    set_field(devs[0], "log_header", field, value)
    e = image_error(devs[0])
    assert (e.invariant, e.errno) == ("LOG-HEADER", errno.EINVAL)


def test_log_header_crc():
    _, devs = image()
    set_field(devs[0], "log_header", "last_index", 9, reseal=False)
    assert image_error(devs[0]).invariant == "LOG-HEADER"


# -- entry level ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["crc", "seqnum"])
def test_log_prefix_stops_and_keeps_the_prefix(how):
    img, devs = image()
    raw_file(img, b"after", 0, L.SimpleFmap.of([E(0, 14 * MiB, 2 * MiB)]))
    bad = 3                                                # d/f1's entry (after ADD, mkdir, f0)
    if how == "crc":
        set_field(devs[0], "file_meta", "mode", 0o600, bad, reseal=False)
    else:
        set_field(devs[0], "log_entry", "seqnum", 9, bad)
    r = replay(devs[0])
    assert [(e.invariant, e.entry) for e in r.rejections] == [("LOG-PREFIX", bad)]
    assert r.stopped_at == bad
    assert set(r.namespace.files) == {"d/f0"} and "after" not in r.namespace.files


@pytest.mark.parametrize("etype", [L.EntryType.DELETE, L.EntryType.INVALID, 77])
def test_entry_type(etype):
    img, devs = image()
    i = img.log.append(etype, L.RawPayload(bytes(520)))
    raw_file(img, b"later", 0, L.SimpleFmap.of([E(0, 14 * MiB, 2 * MiB)]))
    r = replay(devs[0])
    assert [(e.invariant, e.entry) for e in r.rejections] == [("ENTRY-TYPE", i)]
    assert "later" in r.namespace.files                    # a skipped entry does not stop replay


@pytest.mark.parametrize("fmap, size", [
    (L.SimpleFmap(200, (E(0, 14 * MiB, 2 * MiB),) * 16), 1),       # nextents 200 (docs/famfs-format.md 6, item 3)
    (L.SimpleFmap(0, (E(0, 0, 0),) * 16), 0),                                # no extent
    (L.InterleavedFmap(2, 2, 2 * MiB, (E(0, 10 * MiB, 2 * MiB),) * 16), 1),  # niext 2
    (L.InterleavedFmap(1, 17, 2 * MiB, (E(0, 10 * MiB, 2 * MiB),) * 16), 1), # nstrips 17
    (L.InterleavedFmap(1, 2, 3 * MiB, (E(0, 10 * MiB, 6 * MiB),) * 16), 1),  # chunk not a power of 2
    (L.SimpleFmap.of([E(0, 14 * MiB + 4096, 2 * MiB)]), 1),                  # misaligned offset
    (L.SimpleFmap.of([E(0, 14 * MiB, 4096)]), 1),                            # misaligned length
    (L.SimpleFmap.of([E(0, 14 * MiB, 0)]), 0),                               # zero-length extent
    (L.SimpleFmap.of([E(0, 14 * MiB, 2 * MiB)]), 2 * MiB + 1),               # size > extents
    (L.InterleavedFmap.of(2 * MiB, [E(0, 10 * MiB, 2 * MiB), E(0, 12 * MiB, 2 * MiB)]), 6 * MiB),  # strips short
    (L.RawFmap(9, 1, (0,) * 50), 0),                                         # unknown ext_type
])
def test_fmap_shape(fmap, size):
    img, devs = image()
    i = raw_file(img, b"x", size, fmap)
    e = one(devs[0])
    assert (e.invariant, e.errno, e.entry) == ("FMAP-SHAPE", errno.EINVAL, i)


@pytest.mark.parametrize("ext", [
    E(0, 16 * MiB, 2 * MiB),                 # past the end of the device
    E(1, 14 * MiB, 4 * MiB),                 # past the end of the secondary
    E(0, (1 << 64) - 2 * MiB, 4 * MiB),      # u64 overflow
    E(0, 0, 2 * MiB),                        # offset 0: the superblock
    E(0, 2 * MiB, 2 * MiB),                  # over the log
    E(1, 0, 2 * MiB),                        # the secondary's superblock
])
def test_ext_bounds(ext):
    img, devs = image()
    i = raw_file(img, b"x", 1, L.SimpleFmap.of([ext]))
    e = one(devs[0])
    assert (e.invariant, e.errno, e.entry) == ("EXT-BOUNDS", errno.ERANGE, i)


@pytest.mark.parametrize("path", [b"", b"/abs", b"../up", b"a/../../x", b"a//b", b"a/", b".", b"x" * 80,
                                  b"\xff\xfe"])
def test_ns_contained(path):
    img, devs = image()
    i = raw_file(img, path, 0, L.SimpleFmap.of([E(0, 14 * MiB, 2 * MiB)]))
    e = one(devs[0])
    assert (e.invariant, e.entry) == ("NS-CONTAINED", i)


@pytest.mark.parametrize("path, err", [
    (b"d/f0", errno.EEXIST),       # duplicate file
    (b"d", errno.EEXIST),          # file over a directory
    (b"d/f0/x", errno.ENOTDIR),    # under a file
    (b"nodir/x", errno.ENOENT),    # missing parent
    (b".meta/x", errno.EPERM),     # famfs's meta directory
])
def test_ns_conflict(path, err):
    img, devs = image()
    i = raw_file(img, path, 0, L.SimpleFmap.of([E(0, 14 * MiB, 2 * MiB)]))
    e = one(devs[0])
    assert (e.invariant, e.errno, e.entry) == ("NS-CONFLICT", err, i)


def test_ns_conflict_duplicate_mkdir():
    img, devs = image()
    i = img.log.append(L.EntryType.MKDIR, L.Mkdir(0, 0, 0o755, b"d"))
    assert (one(devs[0]).invariant, one(devs[0]).entry) == ("NS-CONFLICT", i)


@pytest.mark.parametrize("index, err", [(5, errno.ERANGE), (1, errno.ERANGE)])
def test_idx_dense_gap_and_repeat(index, err):
    img, devs = image()
    img.add_daxdev(uuid.UUID(int=0xDD).bytes, 16 * MiB, index=index)
    e = one(devs[0])
    assert (e.invariant, e.errno, e.entry) == ("IDX-DENSE", err, img.log.next_index - 1)


def test_idx_dense_table_full():
    img, devs = image(1)
    for k in range(63):
        img.add_daxdev(uuid.UUID(int=0x1000 + k).bytes, 16 * MiB)
    img.add_daxdev(uuid.UUID(int=0x9999).bytes, 16 * MiB, index=64)
    e = one(devs[0])
    assert (e.invariant, e.errno) == ("IDX-DENSE", errno.ENOSPC)


@pytest.mark.parametrize("which", [PRIMARY, SECOND])
def test_idx_uuid_unique(which):
    img, devs = image()
    img.add_daxdev(which, 16 * MiB)
    e = one(devs[0])
    assert (e.invariant, e.errno) == ("IDX-UUID-UNIQUE", errno.EEXIST)


def test_idx_defined_before_use():
    img, devs = image()
    i = raw_file(img, b"early", 1, L.SimpleFmap.of([E(2, 4 * MiB, 2 * MiB)]))   # index 2 not added yet
    img.add_daxdev(uuid.UUID(int=0xCC).bytes, 16 * MiB)
    raw_file(img, b"late", 1, L.SimpleFmap.of([E(2, 4 * MiB, 2 * MiB)]))       # now it is
    r = replay(devs[0])
    assert [(e.invariant, e.errno, e.entry) for e in r.rejections] == [("IDX-DEFINED-BEFORE-USE", errno.ENODEV, i)]
    assert "late" in r.namespace.files and "early" not in r.namespace.files


def test_idx_defined_before_use_interleaved_strip_and_huge_index():
    img, devs = image()
    i = raw_file(img, b"s", 1, L.InterleavedFmap.of(2 * MiB, [E(0, 10 * MiB, 2 * MiB), E(9, 4 * MiB, 2 * MiB)]))
    j = raw_file(img, b"h", 1, L.SimpleFmap.of([E(1 << 60, 4 * MiB, 2 * MiB)]))
    r = replay(devs[0])
    assert [(e.invariant, e.entry) for e in r.rejections] == \
        [("IDX-DEFINED-BEFORE-USE", i), ("IDX-DEFINED-BEFORE-USE", j)]


def test_checks_off_skips_entry_crcs_only():
    img, devs = image()
    set_field(devs[0], "file_meta", "mode", 0o600, 3, reseal=False)
    assert replay(devs[0]).stopped_at == 3
    r = replay(devs[0], check_crc=False)
    assert r.clean and r.namespace.files["d/f1"].mode == 0o600


# -- generated images and arbitrary bytes ---------------------------------------------------


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs(min_devices=1, max_devices=8, max_ops=16))
def test_generated_images_replay_to_what_was_built(spec):
    built = build(spec)
    r = replay(built.primary)
    assert r.clean, r.rejections
    assert r.namespace.as_dict() == built.image.expected.as_dict()
    assert [(d.uuid, d.size) for d in r.table] == [(d.uuid, d.size) for d in built.image.table]
    for f in built.image.expected.files.values():
        assert built.image.read(f) == pattern(f.path, f.size)


_BASE = image(3)[1][0]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    st.binary(max_size=2048),
    st.tuples(st.lists(st.tuples(st.integers(0, 2 * MiB + LOG_LEN - 1), st.integers(0, 255)), max_size=8),
              st.booleans())))
def test_any_bytes_give_only_typed_errors(case):
    if isinstance(case, bytes):
        dev = bytearray(case)
    else:
        edits, reseal = case
        dev = bytearray(_BASE[:2 * MiB + LOG_LEN])
        for at, v in edits:
            dev[at] = v
        if reseal:
            L.reseal(dev)
    try:
        replay(dev, device_size=16 * MiB)
    except FamfsError:
        pass


def _outcome(r) -> tuple:
    return (r.namespace, [(e.invariant, str(e)) for e in r.rejections], r.stopped_at, list(r.table))


@pytest.mark.slow
def test_fast_paths_decide_as_the_checked_path(monkeypatch):
    """`_Player.file` accepts one-extent and interleaved entries on its fast paths; every entry it
    does not send to `file_checked` must come out exactly as `file_checked` makes it (same values,
    same rejections and messages). Field edits of every FILE entry of the log_replay corpus, CRCs
    off so that each edit reaches the checks, replayed both ways."""
    import random
    from pathlib import Path

    from harness.famfs import replay as R
    from harness.gen import decode
    rng = random.Random(7)
    images = [decode.log_image(p.read_bytes()) for p in sorted(Path("corpora/log_replay").glob("*")) if p.is_file()]
    devices = [im.device for im in images if im is not None][::4]
    assert len(devices) >= 8
    small, _ = image(3)                      # small striped files, where chunk and strip edits matter
    small.create("d/s", 4096, interleave=Interleave(3, 2 * MiB, (0, 1, 2)))
    small.create("d/t", 5 * MiB, interleave=Interleave(2, 2 * MiB, (2, 0)))
    devices.append(small.devices[0])
    common = [(L.FILE_META, n, w) for n, w in [("size", 8), ("relpath", 80), ("ext_type", 4)]]
    simple = common + [(L.FILE_META, n, w) for n, w in [("nextents", 4), ("se0_devindex", 8), ("se0_offset", 8),
                                                          ("se0_len", 8), ("se1_len", 8)]]
    striped = common + [(L.INTERLEAVE_META, n, w) for n, w in [("niext", 4), ("nstrips", 8), ("chunk_size", 8),
                                                                 ("st0_len", 8), ("st1_offset", 8),
                                                                 ("st1_devindex", 8)]]
    values = [0, 1, 2, 3, 4096, 1 << 21, 3 << 21, 15 << 20, 1 << 63]
    cases = 0
    for dev in devices:
        try:
            r = replay(dev, check_crc=False)
        except FamfsError:
            continue
        base = r.superblock.log_offset + L.HEADER_SIZE
        for entry in range(r.entries_read):
            at = base + L.ENTRY_SIZE * entry
            if int.from_bytes(dev[at + 8:at + 12], "little") != L.EntryType.FILE:
                continue
            ext_type = int.from_bytes(dev[at + L.FILE_META.offsets["ext_type"]:][:4], "little")
            for desc, name, width in striped if ext_type == L.ExtType.INTERLEAVE else simple:
                off = at + desc.offsets[name]
                if name == "relpath":
                    edits = [(off + rng.randrange(8), bytes([c])) for c in b"./\x00\xffa"]
                else:
                    edits = [(off, (v % (1 << 8 * width)).to_bytes(width, "little"))
                             for v in values + [rng.getrandbits(8 * width)]]
                for where, new in edits:
                    mutated = bytearray(dev)
                    mutated[where:where + len(new)] = new
                    fast = replay(mutated, check_crc=False)
                    with monkeypatch.context() as m:
                        m.setattr(R._Player, "file", R._Player.file_checked)
                        m.setattr(R._Player, "mkdir", R._Player.mkdir_checked)
                        checked = replay(mutated, check_crc=False)
                    assert _outcome(fast) == _outcome(checked), (name, entry, new)
                    cases += 1
    assert cases > 500
