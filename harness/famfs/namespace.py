"""The replayed namespace: directories and files (with their fmaps) that the log created.

Paths are relative, '/'-separated, without leading slash; the root is "". `.meta` is reserved for
famfs's meta files (`.meta/.superblock`, `.meta/.log`), which are not log entries, so no entry may
create anything under it. Insertion order is log order.

Replay keeps each directory and file it accepted as its record: the entry's bytes up to its CRC,
the very bytes its CRC and checks read (`layout.ENTRY_READ`); `Nodes` turns a record into its
`Dir` or `File` the first time it is read (`layout.FILE_RECORD`, `layout.MKDIR_RECORD`). A full log is 15,000 files:
building two values per file and the cyclic GC's passes over them were about half of a replay,
and a `bytes` object is nothing the GC tracks (a dict of them is not tracked either).
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any, Callable, ItemsView, Iterator, KeysView, Mapping, TypeVar, Union, ValuesView

from harness.famfs.layout import (
    FILE_RECORD, FMAP_WORDS, MKDIR_RECORD, Fmap, InterleavedFmap, SimpleExtent, SimpleFmap, fmap_at,
)

META_DIR = ".meta"


@dataclass(slots=True, unsafe_hash=True)    # immutable by convention (layout._HOT)
class Dir:
    """A directory a MKDIR entry created."""

    path: str
    mode: int
    uid: int
    gid: int
    entry: int


@dataclass(slots=True, unsafe_hash=True)    # immutable by convention (layout._HOT)
class File:
    """A regular file a FILE entry created; `fmap` is validated (simple or interleaved)."""

    path: str
    size: int
    flags: int
    mode: int
    uid: int
    gid: int
    fmap: Union[SimpleFmap, InterleavedFmap]
    entry: int

    def devindices(self) -> set[int]:
        return {e.devindex for e in _extents(self.fmap)}


def _extents(fmap: Fmap) -> tuple[SimpleExtent, ...]:
    if isinstance(fmap, InterleavedFmap):
        return fmap.strips
    if isinstance(fmap, SimpleFmap):
        return fmap.extents
    raise TypeError(f"a served file's fmap is simple or interleaved, not {fmap!r}")   # replay's FMAP-SHAPE


def fmap_as_dict(fmap: Union[SimpleFmap, InterleavedFmap]) -> dict[str, object]:
    """JSON shape of a validated fmap: simple extents, or one interleaved extent with its strips."""
    if isinstance(fmap, InterleavedFmap):
        return {"ext_type": "interleave",
                "extents": [{"nstrips": fmap.nstrips, "chunk_size": fmap.chunk_size,
                             "strips": [_extent_dict(s) for s in fmap.strips]}]}
    return {"ext_type": "simple", "extents": [_extent_dict(e) for e in fmap.extents]}


def _extent_dict(e) -> dict[str, int]:
    return {"devindex": e.devindex, "offset": e.offset, "length": e.len}


def dir_of_record(path: str, record: bytes) -> Dir:
    """The `Dir` of an accepted MKDIR entry's bytes (`layout.MKDIR_RECORD`; its mode's permission bits)."""
    entry, uid, gid, mode = MKDIR_RECORD.unpack_from(record)
    return Dir(path, mode & 0o7777, uid, gid, entry)


def file_of_record(path: str, record: bytes) -> File:
    """The `File` of an accepted FILE entry's bytes (`layout.FILE_RECORD`; its mode's permission
    bits, the fmap decoded from the same bytes as replay's checks decoded it)."""
    entry, size, flags, uid, gid, mode, ext_type, count = FILE_RECORD.unpack_from(record)
    fmap = fmap_at(record, FMAP_WORDS, ext_type, count)
    return File(path, size, flags, mode & 0o7777, uid, gid, fmap, entry)  # type: ignore[arg-type]


V = TypeVar("V", Dir, File)    # what a `Nodes` maps paths to


class Nodes(Mapping[str, V]):
    """Directories or files by path, in insertion order, read as a mapping to their values.

    `store` holds each one as its value (`Namespace.add_dir`, `add_file`) or as the record replay
    kept (`bytes`, written into `store` before anything reads it), which `build(path, record)`
    turns into the value when it is first read; the value then replaces the record. Membership,
    length and keys never build anything; `values`, `items`, equality and repr build every record
    left (`settle`, once) and then read the store as a plain dict."""

    __slots__ = ("store", "build", "_settled")

    def __init__(self, build: Callable[[str, bytes], V]):
        self.store: dict[str, Any] = {}
        self.build: Callable[[str, bytes], V] = build
        self._settled = False

    def __getitem__(self, path: str) -> V:
        value = self.store[path]
        if type(value) is bytes:
            value = self.store[path] = self.build(path, value)
        return value

    def __setitem__(self, path: str, value: V) -> None:
        self.store[path] = value

    def __contains__(self, path: object) -> bool:
        return path in self.store

    def __iter__(self) -> Iterator[str]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)

    def settle(self) -> dict[str, V]:
        """Build every record still in the store; the store, now of values only.

        The cyclic GC is off while it builds (where it was on): the values refer only downwards,
        so its passes over the growing set of new values find nothing, and with it on they were
        more than half of building a full log's 15,000 files."""
        store = self.store
        if not self._settled:
            build = self.build
            collecting = gc.isenabled()
            if collecting:
                gc.disable()
            try:
                for path, value in store.items():       # assigns existing keys only: no resize
                    if type(value) is bytes:
                        store[path] = build(path, value)
            finally:
                if collecting:
                    gc.enable()
            self._settled = True
        return store

    def keys(self) -> KeysView[str]:
        return self.store.keys()

    def values(self) -> ValuesView[V]:
        return self.settle().values()

    def items(self) -> ItemsView[str, V]:
        return self.settle().items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Nodes):
            return self.settle() == other.settle()
        return self.settle() == other if isinstance(other, Mapping) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Nodes({self.settle()!r})"


@dataclass
class Namespace:
    """Directories and files by path, plus each directory's children in creation order."""

    dirs: Nodes[Dir] = field(default_factory=lambda: Nodes(dir_of_record))
    files: Nodes[File] = field(default_factory=lambda: Nodes(file_of_record))
    children: dict[str, list[str]] = field(default_factory=lambda: {"": []})

    def add_dir(self, d: Dir, parent: str | None = None) -> None:
        """Add `d` under `parent` (default: computed from its path)."""
        self.put_dir(d.path, d, parent_of(d.path) if parent is None else parent)

    def add_file(self, f: File, parent: str | None = None) -> None:
        """Add `f` under `parent` (default: computed from its path)."""
        self.put_file(f.path, f, parent_of(f.path) if parent is None else parent)

    def put_dir(self, path: str, value: Dir | bytes, parent: str) -> None:
        """Add directory `path` under `parent`, as its value or as the record replay kept (`Nodes`)."""
        self.dirs.store[path] = value
        self.children[path] = []
        self.children[parent].append(path)

    def put_file(self, path: str, value: File | bytes, parent: str) -> None:
        """Add file `path` under `parent`, as its value or as the record replay kept (`Nodes`)."""
        self.files.store[path] = value
        self.children[parent].append(path)

    def is_dir(self, path: str) -> bool:
        return path == "" or path in self.dirs

    def __contains__(self, path: str) -> bool:
        return path == "" or path in self.dirs or path in self.files

    def walk(self) -> Iterator[Union[Dir, File]]:
        """Every directory and file, in log order."""
        nodes: list[Union[Dir, File]] = [*self.dirs.values(), *self.files.values()]
        yield from sorted(nodes, key=lambda n: n.entry)

    def as_dict(self) -> dict[str, object]:
        return {
            "dirs": [{"path": d.path, "mode": f"0{d.mode:o}", "uid": d.uid, "gid": d.gid}
                     for d in self.dirs.values()],
            "files": [{"path": f.path, "size": f.size, "mode": f"0{f.mode:o}", "uid": f.uid,
                       "gid": f.gid, "flags": f.flags, **fmap_as_dict(f.fmap)}
                      for f in self.files.values()],
        }


def parent_of(path: str) -> str:
    cut = path.rfind("/")
    return "" if cut < 0 else path[:cut]
