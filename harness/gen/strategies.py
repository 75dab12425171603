"""Hypothesis strategies for whole famfs specs (devices, ADD_DAXDEV order, dirs, files, stripes).

`specs()` draws the devices first, then a list of operations in which every secondary is added
at some point (in a drawn order, so the index a UUID gets varies), directories are made under
existing ones, and files land on any index defined so far, simple or striped. Names are mostly
short and drawn from a small alphabet so Hypothesis finds path clashes and shrinks towards "a",
"a/b"; some are near misses that are still valid (long up to the 79-byte limit, dotted like
"a..b" or ".metax"). Sizes include ones that are not chunk multiples; stripes take 1-16 strips
(the limit) with 2-8 MiB chunks; `max_devices` may go up to 24 (a full kernel table), with the
devices past the fourth small so a full table stays cheap.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.famfs.ids import Uuid
from harness.famfs.layout import ALLOC_UNIT
from harness.gen.spec import AddDaxdev, Create, Device, Mkdir, Op, Spec

MiB = 1 << 20
uuids = st.binary(min_size=16, max_size=16).filter(lambda b: b != bytes(16)).map(Uuid)
names = st.one_of(st.text(alphabet="abcxyz", min_size=1, max_size=3),
                  st.sampled_from(["a..b", ".metax", "..x", "x.", "...", "meta", "k" * 40, "l" * 70]))
sizes = st.one_of(st.sampled_from([0, 1, 4096, ALLOC_UNIT, ALLOC_UNIT + 1, 3 * ALLOC_UNIT]),
                  st.integers(0, 5 * ALLOC_UNIT),
                  st.builds(lambda k, d: max(0, k * ALLOC_UNIT + d), st.integers(0, 16),
                            st.sampled_from([1, -1, 4095, 4097, ALLOC_UNIT // 2])))
modes = st.sampled_from([0o644, 0o600, 0o755, 0o444, 0o700])
ids = st.sampled_from([0, 1000, 65534])


@st.composite
def devices(draw: st.DrawFn, min_devices: int = 1, max_devices: int = 8, nodes: int = 1) -> tuple[Device, ...]:
    n = draw(st.integers(min_devices, max_devices))
    us = draw(st.lists(uuids, min_size=n, max_size=n, unique=True))
    out = []
    for i, u in enumerate(us):
        size = (draw(st.sampled_from([16 * MiB, 24 * MiB, 32 * MiB])) if i < 4 else 6 * MiB) if i else 32 * MiB
        out.append(Device(u, size, tuple(f"dax{(i + k) % n}.0" for k in range(nodes))))
    return tuple(out)


@st.composite
def specs(draw: st.DrawFn, min_devices: int = 1, max_devices: int = 8, max_ops: int = 20,
          nodes: int = 1) -> Spec:
    """A well-formed spec: every op placeable in order (the builder still skips on ENOSPC)."""
    devs = draw(devices(min_devices, max_devices, nodes))
    pending = draw(st.permutations(list(range(1, len(devs)))))
    defined, dirs, taken = 1, [""], set()
    ops: list[Op] = []
    for _ in range(draw(st.integers(0, max_ops))):
        kind = draw(st.sampled_from(["add", "mkdir", "file", "file", "stripe"]))
        if kind == "add" or (pending and draw(st.booleans()) and len(ops) % 3 == 0):
            if pending:
                ops.append(AddDaxdev(pending.pop(0)))
                defined += 1
            continue
        parent = draw(st.sampled_from(dirs))
        path = f"{parent}/{draw(names)}".lstrip("/")
        if path in taken or len(path.encode()) > 79:
            continue
        taken.add(path)
        if kind == "mkdir":
            ops.append(Mkdir(path, draw(modes), draw(ids), draw(ids)))
            dirs.append(path)
        elif kind == "stripe" and defined > 1:
            n = draw(st.one_of(st.integers(1, min(4, defined)), st.sampled_from([15, 16])))
            strips = tuple(draw(st.lists(st.integers(0, defined - 1), min_size=n, max_size=n)))
            ops.append(Create(path, draw(sizes), draw(modes), draw(ids), draw(ids), strips=strips,
                              chunk=draw(st.sampled_from([ALLOC_UNIT, 2 * ALLOC_UNIT, 4 * ALLOC_UNIT]))))
        else:
            ops.append(Create(path, draw(sizes), draw(modes), draw(ids), draw(ids),
                              devindex=draw(st.integers(0, defined - 1))))
    ops += [AddDaxdev(p) for p in pending]
    return Spec(devs, tuple(ops), nodes=tuple(f"node{k}" for k in range(nodes)))
