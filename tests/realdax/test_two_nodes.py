"""Two qemu guests on one memory (the same share=on NVDIMM backing files, in opposite order): the
master in A makes the famfs with the project's appender on its /dev/daxN.0 and later appends
ADD_DAXDEV, a file on index 1 and a cross-device interleave; the client in B replays and reads.
A file written by A is read identically by B, and every lookup of both nodes is checked in one
checker (IDX-LOOKUP per node, IDX-CLUSTER across them)."""
from __future__ import annotations

import pytest

from harness.realdax.kit import Kit
from harness.realdax.lanes import STAGE1, STAGE2, two_nodes
from harness.gen.spec import Create


@pytest.mark.slow
def test_file_written_by_a_is_read_identically_by_b(kit: Kit) -> None:
    r = two_nodes(kit)
    assert r.ok, "\n".join(r.problems) + f"\nrun folder: {r.run_dir}"
    a, b = r.guests["A"], r.guests["B"]
    files = {op.path for op in STAGE1 + STAGE2 if isinstance(op, Create)}
    assert set(a["files"]) == set(b["files"]) == files          # stage 2 files: written by A's master
    assert a["files"] == b["files"] and all(r == "read" for v in a["files"].values() for r in v)
    # One UUID, two local names: index 1 is A's second NVDIMM (dax1.0) and B's first (dax0.0).
    assert set(a["lookups_by_index"]["1"]) == {"dax1.0"}
    assert set(b["lookups_by_index"]["1"]) == {"dax0.0"}
    assert set(a["lookups_by_index"]["0"]) == {"dax0.0"} and set(b["lookups_by_index"]["0"]) == {"dax1.0"}
    assert r.lookups_checked == sum(sum(v.values()) for g in (a, b) for v in g["lookups_by_index"].values())
    assert r.files_checked == 2 * (3 + 5)
