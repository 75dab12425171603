"""The real-DAX smoke: one qemu guest, two NVDIMMs as /dev/dax0.0 and /dev/dax1.0, the daemon
mounted through FUSE on them; every file of the golden-shaped famfs read with the right bytes
and every lookup checked (harness/realdax/lanes.py `smoke`)."""
from __future__ import annotations

from harness.realdax.kit import Kit
from harness.realdax.lanes import STAGE1, STAGE2, smoke


def test_smoke_reads_golden_shaped_famfs_on_real_devdax(kit: Kit) -> None:
    r = smoke(kit)
    assert r.ok, "\n".join(r.problems) + f"\nrun folder: {r.run_dir}"
    files = [op for op in STAGE1 + STAGE2 if hasattr(op, "size")]
    assert r.files_checked == len(files) == 5
    assert r.bytes_checked == sum(op.size for op in files)
    assert r.lookups_checked > 0                          # index 0 and index 1 (GET_DAXDEV) resolved
    print(f"\nreal-DAX smoke: {r.boot_to_result_s['A']} s from qemu start to the result")   # a measure, not a check
