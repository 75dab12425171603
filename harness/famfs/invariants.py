"""The invariant IDs that famfs rejections, probe events and crash signatures are named by.

The IDs live here, in the system under test, because a typed rejection must carry one and
`harness/famfs` imports nothing from the harness. The oracle's catalog (`harness.oracle`) builds its
checks on these same members. Values appear in crasher paths and JSON: never rename one.
"""
from __future__ import annotations

import enum


class Invariant(enum.StrEnum):
    """One rule of famfs's on-media format, its log replay or its daxdev index model."""

    text: str

    def __new__(cls, value: str, text: str) -> "Invariant":
        member = str.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member

    @classmethod
    def of(cls, value: str) -> "Invariant":
        """The member whose ID is `value` (e.g. read back from a message or a file); ValueError if none."""
        for member in cls:
            if member.value == value:
                return member
        raise ValueError(f"no invariant {value!r}")

    # Format and replay.
    SB_VALID = ("SB-VALID", "superblock magic, version, CRC, alloc unit, log offset/length within the device")
    LOG_HEADER = ("LOG-HEADER", "log magic and CRC; length equals the superblock's; last_index, "
                  "next_index and next_seqnum consistent with the log length")
    LOG_PREFIX = ("LOG-PREFIX", "an entry whose CRC or seqnum is wrong ends replay there; "
                  "nothing after it is applied")
    ENTRY_TYPE = ("ENTRY-TYPE", "unknown entry types (and DELETE, never written by famfs) are rejected")
    FMAP_SHAPE = ("FMAP-SHAPE", "known ext_type, 1..16 extents, one interleaved extent, 1..16 strips, "
                  "chunk a power of two, a multiple of the alloc unit and at most 2^31 (the GET_FMAP "
                  "reply's chunk field is 32 bits), no zero-length or "
                  "misaligned extent, extents cover the file size")
    EXT_BOUNDS = ("EXT-BOUNDS", "every extent lies inside its device, without u64 overflow, and never "
                  "over a superblock or the log")
    EXT_OVERLAP = ("EXT-OVERLAP", "no two files share allocation units (fsck level)")
    NS_CONTAINED = ("NS-CONTAINED", "no path escapes the namespace: not absolute, no '.' or '..', "
                    "NUL-terminated within 80 bytes, not empty")
    NS_CONFLICT = ("NS-CONFLICT", "a path is created once; file/directory clashes and missing "
                   "parents are rejected")
    # The daxdev index model (docs/famfs-format.md section 5).
    IDX_PRIMARY = ("IDX-PRIMARY", "index 0 is the daxdev whose superblock holds the log; known at mount")
    IDX_DENSE = ("IDX-DENSE", "ADD_DAXDEV defines index n only when 0..n-1 exist, in log order, "
                 "within the table's slots")
    IDX_UUID_UNIQUE = ("IDX-UUID-UNIQUE", "a UUID appears once in the table, the primary included")
    IDX_DEFINED_BEFORE_USE = ("IDX-DEFINED-BEFORE-USE", "an fmap references only indices defined "
                              "earlier in the log")
    IDX_CLUSTER = ("IDX-CLUSTER", "on every node, index i denotes the same UUID")
    IDX_RESOLVE = ("IDX-RESOLVE", "a UUID resolves to exactly one local device on a node, or to a "
                   "clean 'missing'")
    IDX_LOOKUP = ("IDX-LOOKUP", "a lookup of index i returns the device whose UUID the log gave i on "
                  "this node, or a clean error; never another device, never a half-published slot")
    TBL_PUBLISH = ("TBL-PUBLISH", "a slot is read as valid only after all its fields are written")
    # Data.
    DATA = ("DATA", "bytes read through the mount equal the bytes the spec wrote")
    # Shared memory across nodes (docs/shared-memory.md).
    SHM_CONVERGE = ("SHM-CONVERGE", "once the master's flushes and fences of an operation are done, a client's "
                    "logplay shows exactly the master's namespace and index table")
    FS_IDENTITY = ("FS-IDENTITY", "a mount serves only the file system it mounted: a superblock whose "
                   "file-system UUID or log region changed under the mount (a re-made file system) is "
                   "refused (ESTALE), never read through the old fmaps or the old index table")
