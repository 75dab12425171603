"""logplay: a primary daxdev's superblock + log -> a Namespace and an IndexTable, rejecting bad entries.

Semantics (docs/architecture.md "Format and replay", docs/famfs-format.md sections 2 and 5):

* A bad superblock (SB-VALID, IDX-PRIMARY) or log header (LOG-HEADER) makes the image unusable:
  `replay()` raises the typed rejection and nothing is replayed.
* Entries 0 .. next_index-1 are read in order, and only inside the log region: `next_index` is
  trusted only after it was checked against the log length. An entry whose CRC or seqnum is wrong
  ends replay there (LOG-PREFIX): it is recorded, `stopped_at` names it, nothing after it applies.
* A well-formed entry that is semantically bad (ENTRY-TYPE, FMAP-SHAPE, IDX-*, EXT-BOUNDS,
  NS-CONTAINED, NS-CONFLICT) is recorded as a rejection and skipped; replay goes on. Each entry
  gets at most one rejection, from the first check it fails, in this order: path, fmap shape,
  indices defined, extent bounds, namespace conflict.

Nothing but `FamfsError` leaves this module, whatever the bytes.

Caveats (where this differs from famfs 5d0919f, on purpose): famfs aborts logplay at a bad entry
but keeps the entries before it (same here); it silently ignores ADD_DAXDEV, DELETE and unknown
types (here: ADD_DAXDEV builds the index table, the others are ENTRY-TYPE rejections); it accepts
duplicate paths first-writer-wins (here: NS-CONFLICT); it checks no extent shape, bound or path
escape (here: FMAP-SHAPE, EXT-BOUNDS, NS-CONTAINED). Paths must be UTF-8 (NS-CONTAINED otherwise);
`fm_mode`/`md_mode` keep only their permission bits (0o7777), as famfs ORs in the type itself.
The log may be smaller than famfs's 8 MiB minimum (fuzz images), as long as one entry fits.

Speed: `famfs-fuzz bench` replays a full 8 MiB log (15,420 entries) against a pass that only
checks CRC and seqnum. Each entry is read once, as bytes (`layout.ENTRY_READ`), and its fields
unpacked from those with `layout`'s codecs (no `LogEntry` per entry). The common entries (a plain
path, one simple extent, or an interleaved fmap, every check passed) take a fast path decided on
the unpacked words; everything else, and every rejection, goes through `_Player.file_checked`, so
the fast path can only accept what the checked path accepts (`tests/famfs/test_replay.py`
compares them on edited entries). An accepted directory or file is kept as its entry's bytes,
which the namespace turns into a `Dir` or `File` when it is read (`namespace.Nodes`): no value
is built, and nothing the cyclic GC tracks is kept, per entry. docs/benchmarks.md has the numbers.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Union

from harness.famfs.errors import EntryRejected, FamfsError, LogHeaderRejected, SuperblockRejected
from harness.famfs.index import IndexTable
from harness.famfs.layout import (
    ADD_DAXDEV_BODY, ALLOC_UNITS_ACCEPTED, CURRENT_VERSION, ENTRY_HEAD, ENTRY_READ, ENTRY_SIZE, EXTENT, FMAP_WORDS,
    FILE_SHAPE, HEADER_SIZE, LOG_HEADER, LOG_MAGIC, MAX_CHUNK_SIZE, MAX_DAXDEVS, MAX_INTERLEAVED_EXTENTS,
    MAX_PATHLEN, MAX_SIMPLE_EXTENTS, MAX_STRIPS, MKDIR, MKDIR_PATH, PAYLOAD, SECONDARY_SB, STRIPS_AT, SUPER_MAGIC,
    SUPERBLOCK, SUPERBLOCK_SIZE, U64_MAX, AddDaxdev, EntryType, ExtType, InterleavedFmap, LogHeader, SimpleExtent,
    SimpleFmap, Superblock, crc32, fmap_at, log_slots,
)
from harness.famfs.namespace import META_DIR, Namespace
from harness.famfs.probe import NULL_PROBE, Probe

# Plain ints for the per-entry dispatch: comparing with an IntEnum member costs an enum lookup.
_FILE, _MKDIR, _ADD_DAXDEV = int(EntryType.FILE), int(EntryType.MKDIR), int(EntryType.ADD_DAXDEV)
_SIMPLE, _INTERLEAVE = int(ExtType.SIMPLE), int(ExtType.INTERLEAVE)
_MKDIR_PATH_AT = MKDIR.offsets["relpath"]
assert all(u & (u - 1) == 0 for u in ALLOC_UNITS_ACCEPTED)    # `_Player.au_mask` tests alignment


@dataclass(frozen=True)
class Replay:
    """What logplay produced from one primary device."""

    superblock: Superblock
    header: LogHeader
    table: IndexTable
    namespace: Namespace
    rejections: tuple[FamfsError, ...]
    stopped_at: int | None            # entry number where LOG-PREFIX ended replay, else None
    entries_read: int                 # entries whose CRC/seqnum were checked (incl. a bad last one)

    @property
    def clean(self) -> bool:
        return not self.rejections


def check_superblock(device: Union[bytes, bytearray, memoryview], device_size: int | None = None) -> Superblock:
    """Decode and validate a primary's superblock (SB-VALID, IDX-PRIMARY) or raise."""
    if len(device) < SUPERBLOCK.size:
        raise SuperblockRejected.bad(f"device holds {len(device)} bytes, a superblock needs {SUPERBLOCK.size}")
    sb = Superblock.decode(device)
    if sb.magic != SUPER_MAGIC:
        raise SuperblockRejected.bad(f"bad magic {sb.magic:#x}")
    if sb.version != CURRENT_VERSION:
        raise SuperblockRejected.bad(f"version {sb.version}, expected {CURRENT_VERSION}")
    computed = SUPERBLOCK.crc_over(device)
    if sb.crc != computed:
        raise SuperblockRejected.bad(f"superblock CRC {sb.crc:#x} != computed {computed:#x}")
    if sb.alloc_unit not in ALLOC_UNITS_ACCEPTED:
        raise SuperblockRejected.bad(f"alloc unit {sb.alloc_unit:#x} not in {ALLOC_UNITS_ACCEPTED}")
    if sb.flags & SECONDARY_SB:
        raise SuperblockRejected.not_primary("superblock is a secondary's (flag SECONDARY); it holds no log")
    if sb.dev_uuid == bytes(16):
        raise SuperblockRejected.not_primary("superblock has a nil device UUID: index 0 is unusable")
    size = device_size if device_size is not None else sb.dd_size
    if sb.log_offset < SUPERBLOCK.size or sb.log_len < HEADER_SIZE + ENTRY_SIZE:
        raise SuperblockRejected.bad(f"log region [{sb.log_offset:#x}, +{sb.log_len:#x}) overlaps the "
                                     "superblock or holds no entry")
    end = sb.log_offset + sb.log_len
    if end > size or end > len(device):
        raise SuperblockRejected.bad(f"log region ends at {end:#x}, past the device ({min(size, len(device)):#x})")
    return sb


def check_header(device: Union[bytes, bytearray, memoryview], sb: Superblock) -> LogHeader:
    """Decode and validate the log header (LOG-HEADER) or raise."""
    off = sb.log_offset
    h = LogHeader.decode(device, off)
    if h.magic != LOG_MAGIC:
        raise LogHeaderRejected.bad(f"bad log magic {h.magic:#x}")
    if h.crc != LOG_HEADER.crc_over(device, off):
        raise LogHeaderRejected.bad(f"log header CRC {h.crc:#x} != computed")
    if h.len != sb.log_len:
        raise LogHeaderRejected.bad(f"log length {h.len:#x} != superblock's {sb.log_len:#x}")
    slots = log_slots(sb.log_len)
    if h.last_index != slots - 1:
        raise LogHeaderRejected.bad(f"last_index {h.last_index} != {slots - 1} for a log of {sb.log_len:#x} bytes")
    if h.next_index > slots:
        raise LogHeaderRejected.bad(f"next_index {h.next_index} past the last slot {slots - 1}")
    if h.next_seqnum != h.next_index:
        raise LogHeaderRejected.bad(f"next_seqnum {h.next_seqnum} != next_index {h.next_index}")
    return h


def replay(device: Union[bytes, bytearray, memoryview], *, device_size: int | None = None,
           probe: Probe = NULL_PROBE, check_crc: bool = True,
           table_slots: int = MAX_DAXDEVS) -> Replay:
    """Replay the log of the primary `device` (its bytes from offset 0 through the log's end).

    `device_size` is the primary's real size (bounds for index 0); default: the superblock's
    `dd_size`. `check_crc=False` skips entry CRCs ("checks-off" triage mode; seqnums still count).
    """
    sb = check_superblock(device, device_size)
    header = check_header(device, sb)
    size0 = device_size if device_size is not None else sb.dd_size
    table = IndexTable(sb.dev_uuid, size0, table_slots)
    if probe.enabled:
        probe.index_assigned(table[0].index, table[0].uuid, size0, None)
    player = _Player(sb, table, probe)
    log = memoryview(device)[sb.log_offset: sb.log_offset + sb.log_len]
    stopped_at = _entries(header.next_index, log, player, check_crc)
    read = (stopped_at + 1) if stopped_at is not None else header.next_index
    return Replay(sb, header, table, player.ns, tuple(player.rejections), stopped_at, read)


def _entries(next_index: int, log: memoryview, player: "_Player", check_crc: bool) -> int | None:
    """Read entries 0 .. next_index-1 into `player`; the entry where LOG-PREFIX stopped, or None."""
    head, read = ENTRY_HEAD.unpack_from, ENTRY_READ.unpack_from
    file, mkdir, apply = player.file, player.mkdir, player.apply
    stopped_at = None
    for i in range(next_index):
        entry, crc = read(log, HEADER_SIZE + ENTRY_SIZE * i)     # layout.ENTRY_READ
        if check_crc and crc32(entry) != crc:
            player.reject(EntryRejected.torn(i, "entry CRC mismatch"))
            stopped_at = i
            break
        seqnum, etype = head(entry)
        if seqnum != i:
            player.reject(EntryRejected.torn(i, f"seqnum {seqnum} in slot {i}"))
            stopped_at = i
            break
        try:
            if etype == _FILE:
                file(i, entry)
            elif etype == _MKDIR:
                mkdir(i, entry)
            else:
                apply(i, etype, entry)
        except FamfsError as e:
            player.reject(e)
    return stopped_at


class _Player:
    """Applies entries one at a time to a namespace and index table.

    Each entry kind has one method taking the entry's bytes up to its CRC (as `_entries` read and
    checked them, `layout.ENTRY_READ`); it reads the fields it needs with `layout`'s codecs (no
    `LogEntry` value in between), raises the first typed rejection the entry earns, and keeps the
    bytes of a directory or file it accepts as its record in the namespace (`namespace.Nodes`)."""

    def __init__(self, sb: Superblock, table: IndexTable, probe: Probe):
        self.au = sb.alloc_unit
        self.au_mask = sb.alloc_unit - 1    # a power of two (SB-VALID: ALLOC_UNITS_ACCEPTED)
        self.reserved0 = max(SUPERBLOCK_SIZE, sb.log_offset + sb.log_len)
        self.table = table
        self.sizes = table.sizes()          # daxdev sizes by index, kept in step with `table`
        self.probe = probe
        self.ns = Namespace()
        # the stores of the namespace's `Nodes`: replay writes records into them, and reads
        # them for its path checks without building a value
        self.files, self.dirs, self.children = self.ns.files.store, self.ns.dirs.store, self.ns.children
        self.rejections: list[FamfsError] = []

    def reject(self, e: FamfsError) -> None:
        self.rejections.append(e)
        if self.probe.enabled:
            self.probe.rejected(e)

    def apply(self, i: int, etype: int, entry: bytes) -> None:
        """Apply entry `i` of type `etype` (ENTRY-TYPE: famfs writes no other type)."""
        if etype == _FILE:
            self.file(i, entry)
        elif etype == _MKDIR:
            self.mkdir(i, entry)
        elif etype == _ADD_DAXDEV:
            self.add_daxdev(i, entry)
        else:
            raise EntryRejected.bad_type(i, etype)

    def mkdir(self, i: int, entry: bytes) -> None:
        raw = MKDIR_PATH.unpack_from(entry, _MKDIR_PATH_AT)[0]
        path = self.plain_path(raw) or self.path(i, raw)
        self.ns.put_dir(path, entry, self.place(i, path))

    def mkdir_checked(self, i: int, entry: bytes) -> None:
        """`mkdir` without the plain-path shortcut (the tests compare the two)."""
        path = self.path(i, MKDIR_PATH.unpack_from(entry, _MKDIR_PATH_AT)[0])
        self.ns.put_dir(path, entry, self.place(i, path))

    def add_daxdev(self, i: int, entry: bytes) -> None:
        dev = self.table.add(i, AddDaxdev(*ADD_DAXDEV_BODY.unpack_from(entry, PAYLOAD)))
        self.sizes.append(dev.size)
        if self.probe.enabled:
            self.probe.index_assigned(dev.index, dev.uuid, dev.size, i)

    def file(self, i: int, entry: bytes) -> None:
        """A FILE entry. Fast path: a plain path and one simple extent that passes every check
        (most entries famfs writes), tested on the unpacked words. Anything else, good or bad,
        goes through `file_checked`, the one place that decides rejections, so the fast path can
        only accept what it would accept. Both keep the entry's bytes (`namespace.Nodes`)."""
        size, raw, ext_type, count, dev, off, ln = FILE_SHAPE.unpack_from(entry, PAYLOAD)
        if ext_type == _SIMPLE and count == 1:
            sizes = self.sizes
            if ln >= size and ln and not (off | ln) & self.au_mask and dev < len(sizes) \
                    and off + ln <= sizes[dev] and off >= (SUPERBLOCK_SIZE if dev else self.reserved0):
                path = self.plain_path(raw)
                dirs = self.dirs
                if path and path not in self.files and path not in dirs:
                    parent = path.rpartition("/")[0]
                    if not parent or parent in dirs:
                        self.files[path] = entry                 # ns.put_file, inlined: the hot path
                        self.children[parent].append(path)
                        return
        elif ext_type == _INTERLEAVE and count == MAX_INTERLEAVED_EXTENTS \
                and self.interleaved(entry, size, raw, dev, off):
            return
        self.file_checked(i, entry)

    def interleaved(self, entry: bytes, size: int, raw: bytes, n: int, chunk: int) -> bool:
        """`file`'s fast path for an interleaved fmap (`n` strips of `chunk`: the union's first
        two words, which `file` unpacked as extent 0's devindex and offset): True if the entry
        passed every check and was added as `file_checked` would add it; False (nothing changed)
        sends it there."""
        if not 1 <= n <= MAX_STRIPS or not chunk or chunk & (chunk - 1) or chunk % self.au \
                or chunk > MAX_CHUNK_SIZE:
            return False
        path = self.plain_path(raw)
        if not path or path in self.files or path in self.dirs:
            return False
        parent = path.rpartition("/")[0]
        if parent and parent not in self.dirs:
            return False
        sizes, nchunks = self.sizes, -(-size // chunk)
        for k, (dev, off, ln) in enumerate(EXTENT.iter_unpack(entry[STRIPS_AT:STRIPS_AT + EXTENT.size * n])):
            if not ln or (off | ln) & self.au_mask or dev >= len(sizes) or off + ln > sizes[dev] \
                    or off < (self.reserved0 if dev == 0 else SUPERBLOCK_SIZE) \
                    or ln < strip_bytes_needed(size, chunk, n, k, nchunks):
                return False
        self.ns.put_file(path, entry, parent)
        return True

    @staticmethod
    def plain_path(field: bytes) -> str | None:
        """The path of a relpath field that passes `path` without question (NUL-terminated, not
        empty or absolute, UTF-8, no '.' at all, no empty component), else None. A path with no
        '.' cannot be under `.meta` either."""
        end = field.find(0, 0, MAX_PATHLEN)
        if end <= 0 or field[0] == 0x2F:
            return None
        try:
            path = field[:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "." in path or "//" in path or path[-1] == "/":
            return None
        return path

    def file_checked(self, i: int, entry: bytes) -> None:
        """A FILE entry, every check in its order, raising the first rejection it earns."""
        size, raw, ext_type, count, _, _, _ = FILE_SHAPE.unpack_from(entry, PAYLOAD)
        path = self.path(i, raw)
        fmap = fmap_at(entry, FMAP_WORDS, ext_type, count)
        if ext_type == _SIMPLE:
            extents = self.simple_shape(i, size, fmap)  # type: ignore[arg-type]
        elif ext_type == _INTERLEAVE:
            extents = self.interleave_shape(i, size, fmap)  # type: ignore[arg-type]
        else:
            raise EntryRejected.bad_fmap(i, f"unknown ext_type {ext_type}")
        for ext in extents:
            if not self.table.defined(ext.devindex):
                raise EntryRejected.undefined_index(i, ext.devindex, len(self.table))
        self.bounds(i, extents)
        self.ns.put_file(path, entry, self.place(i, path))

    # -- checks, each raising one typed rejection ---------------------------------------------

    def path(self, i: int, field: bytes) -> str:
        """The path named by a raw 80-byte relpath field (NS-CONTAINED)."""
        end = field.find(0, 0, MAX_PATHLEN)
        if end < 0:
            raise EntryRejected.escapes(i, f"relpath not NUL-terminated within {MAX_PATHLEN} bytes")
        raw = field[:end]
        if not raw:
            raise EntryRejected.escapes(i, "empty relpath")
        if raw.startswith(b"/"):
            raise EntryRejected.escapes(i, f"absolute relpath {raw!r}")
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EntryRejected.escapes(i, f"relpath {raw!r} is not UTF-8") from None
        # A component can be empty, "." or ".." only if the path has a ".", a "//" or a trailing
        # "/" (a leading one was refused above); most paths have none, so they skip the split.
        if "." in path or "//" in path or path.endswith("/"):
            for part in path.split("/"):
                if part in ("", ".", ".."):
                    raise EntryRejected.escapes(i, f"relpath {path!r} has an empty, '.' or '..' component")
        return path

    def place(self, i: int, path: str) -> str:
        """Check that `path` can be created (NS-CONFLICT); return its parent directory."""
        files, dirs = self.files, self.dirs
        if path.startswith(META_DIR) and (path == META_DIR or path.startswith(META_DIR + "/")):
            raise EntryRejected.conflict(i, f"{path!r} is inside the reserved {META_DIR}/", errno.EPERM)
        if path in files or path in dirs:
            raise EntryRejected.conflict(i, f"{path!r} already exists")
        parent = path.rpartition("/")[0]              # namespace.parent_of, in one call
        if parent in files:
            raise EntryRejected.conflict(i, f"parent {parent!r} of {path!r} is a file", errno.ENOTDIR)
        if parent and parent not in dirs:
            raise EntryRejected.conflict(i, f"parent {parent!r} of {path!r} does not exist", errno.ENOENT)
        return parent

    def simple_shape(self, i: int, size: int, fmap: SimpleFmap) -> tuple[SimpleExtent, ...]:
        n = fmap.nextents
        if not 1 <= n <= MAX_SIMPLE_EXTENTS:
            raise EntryRejected.bad_fmap(i, f"nextents {n} not in 1..{MAX_SIMPLE_EXTENTS}")
        extents = fmap.slots[:n]
        total = self.aligned(i, extents)
        if total < size:
            raise EntryRejected.bad_fmap(i, f"extents cover {total:#x} bytes, file size is {size:#x}")
        return extents

    def interleave_shape(self, i: int, size: int, fmap: InterleavedFmap) -> tuple[SimpleExtent, ...]:
        if fmap.niext != MAX_INTERLEAVED_EXTENTS:
            raise EntryRejected.bad_fmap(i, f"niext {fmap.niext}, famfs allows exactly {MAX_INTERLEAVED_EXTENTS}")
        n, chunk = fmap.nstrips, fmap.chunk_size
        if not 1 <= n <= MAX_STRIPS:
            raise EntryRejected.bad_fmap(i, f"nstrips {n} not in 1..{MAX_STRIPS}")
        if chunk == 0 or chunk & (chunk - 1) or chunk % self.au:
            raise EntryRejected.bad_fmap(i, f"chunk size {chunk:#x} not a power of two multiple of {self.au:#x}")
        if chunk > MAX_CHUNK_SIZE:              # listed but never servable: the wire's field is u32
            raise EntryRejected.bad_fmap(i, f"chunk size {chunk:#x} does not fit the GET_FMAP reply's "
                                            f"32-bit chunk field (at most {MAX_CHUNK_SIZE:#x})")
        strips = fmap.strip_slots[:n]
        self.aligned(i, strips)
        nchunks = -(-size // chunk)
        for k, strip in enumerate(strips):
            need = strip_bytes_needed(size, chunk, n, k, nchunks)
            if strip.len < need:
                raise EntryRejected.bad_fmap(i, f"strip {k} holds {strip.len:#x} bytes, the file needs {need:#x}")
        return strips

    def aligned(self, i: int, extents: tuple[SimpleExtent, ...]) -> int:
        """Check that no extent is empty or unaligned (FMAP-SHAPE); return the bytes they cover."""
        au, total = self.au, 0
        for ext in extents:
            if ext.len == 0:
                raise EntryRejected.bad_fmap(i, "zero-length extent")
            if ext.offset % au or ext.len % au:
                raise EntryRejected.bad_fmap(i, f"extent [{ext.offset:#x}, +{ext.len:#x}) not aligned to {au:#x}")
            total += ext.len
        return total

    def bounds(self, i: int, extents: tuple[SimpleExtent, ...]) -> None:
        """Check that every extent lies inside its (defined) daxdev, clear of its superblock and,
        on the primary, of the log (EXT-BOUNDS)."""
        table = self.table
        for ext in extents:
            end = ext.offset + ext.len
            if end > U64_MAX:
                raise EntryRejected.out_of_bounds(i, f"extent [{ext.offset:#x}, +{ext.len:#x}) overflows u64")
            size = table[ext.devindex].size
            if end > size:
                raise EntryRejected.out_of_bounds(
                    i, f"extent [{ext.offset:#x}, {end:#x}) past the end of daxdev {ext.devindex} ({size:#x})")
            reserved = self.reserved0 if ext.devindex == 0 else SUPERBLOCK_SIZE
            if ext.offset < reserved:
                what = "superblock and log" if ext.devindex == 0 else "superblock"
                raise EntryRejected.out_of_bounds(
                    i, f"extent at {ext.offset:#x} overlaps the {what} of daxdev {ext.devindex} (< {reserved:#x})")


def strip_bytes_needed(size: int, chunk: int, nstrips: int, k: int, nchunks: int | None = None) -> int:
    """Bytes strip `k` must hold so that every chunk striped onto it fits (docs/famfs-format.md, section 3)."""
    if nchunks is None:
        nchunks = -(-size // chunk)
    if k >= nchunks:
        return 0
    last = k + ((nchunks - 1 - k) // nstrips) * nstrips     # last chunk that lands on strip k
    return (last // nstrips) * chunk + min(chunk, size - last * chunk)
