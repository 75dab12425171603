"""The golden image written by the real famfs C code (commit 5d0919f), copied into the repo."""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "famfs-5d0919f"
DEVICE_SIZE = 1 << 30


@lru_cache(maxsize=1)
def golden_head() -> bytes:
    """The first 10 MiB of the 1 GiB device: superblock region and the 8 MiB log."""
    return gzip.decompress((GOLDEN_DIR / "primary-head.img.gz").read_bytes())


def golden_device_file(directory: Path) -> Path:
    """The golden device as a sparse 1 GiB file in `directory`."""
    path = directory / "golden.img"
    with open(path, "wb") as f:
        f.write(golden_head())
        f.truncate(DEVICE_SIZE)
    return path
