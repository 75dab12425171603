"""The identities famfs-fuzz passes around, each with one representation.

* `Uuid`: a daxdev's (or file system's) UUID as the 16 raw bytes famfs stores on media. Inside the
  harness a UUID is always this; text (`uuid_str`, libuuid's form) is made only at the edges: JSON,
  messages, the CLI (`parse_uuid` reads it back).
* `DaxIndex`: a daxdev index, the userspace table's slot number (0 is the primary).
* `NodeName`: the name of a node of the cluster (a host sharing the memory), e.g. "A".
"""
from __future__ import annotations

import uuid as _uuid
from typing import NewType

Uuid = NewType("Uuid", bytes)
DaxIndex = NewType("DaxIndex", int)
NodeName = NewType("NodeName", str)

NIL_UUID = Uuid(bytes(16))


def uuid_str(raw: bytes) -> str:
    """A 16-byte UUID as famfs prints it (libuuid `uuid_unparse`: lower-case hex, 8-4-4-4-12;
    what str(uuid.UUID) gives, at a quarter of its cost)."""
    if len(raw) != 16:
        return str(_uuid.UUID(bytes=bytes(raw)))      # its ValueError for a wrong length
    h = bytes(raw).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_uuid(text: str) -> Uuid:
    """The UUID written as `text` (any form `uuid.UUID` reads); ValueError if it is none."""
    return Uuid(_uuid.UUID(text).bytes)


def as_uuid(raw: bytes | bytearray | memoryview) -> Uuid:
    """`raw` (16 bytes) as a Uuid; ValueError for any other length."""
    b = bytes(raw)
    if len(b) != 16:
        raise ValueError(f"a UUID is 16 bytes, not {len(b)}")
    return Uuid(b)
