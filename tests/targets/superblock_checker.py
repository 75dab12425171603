"""A small famfs checker that the generic target tests give the `external` target as its command.

It accepts an image (exit 0) whose superblock carries famfs's magic and a CRC that matches bytes
[0, 96), and refuses anything else (exit 1): the two verdicts the external target expects from a
correct program, so a clean run on main must record no finding. Standard library only, as any
program the external target runs.
"""
from __future__ import annotations

import struct
import sys
import zlib

SUPER_MAGIC = 0x87B282FF


def verdict(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(104)
    if len(head) < 104:
        return 1
    magic, crc = struct.unpack_from("<Q", head, 0)[0], struct.unpack_from("<Q", head, 96)[0]
    return 0 if magic == SUPER_MAGIC and crc == zlib.crc32(head[:96]) else 1


if __name__ == "__main__":
    sys.exit(verdict(sys.argv[1]))
