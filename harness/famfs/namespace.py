"""The replayed namespace: directories and files (with their fmaps) that the log created.

Paths are relative, '/'-separated, without leading slash; the root is "". `.meta` is reserved for
famfs's meta files (`.meta/.superblock`, `.meta/.log`), which are not log entries, so no entry may
create anything under it. Insertion order is log order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

from harness.famfs.layout import Fmap, InterleavedFmap, SimpleExtent, SimpleFmap

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


@dataclass
class Namespace:
    """Directories and files by path, plus each directory's children in creation order."""

    dirs: dict[str, Dir] = field(default_factory=dict)
    files: dict[str, File] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=lambda: {"": []})

    def add_dir(self, d: Dir, parent: str | None = None) -> None:
        """Add `d` under `parent` (default: computed from its path; replay passes the one it checked)."""
        self.dirs[d.path] = d
        self.children[d.path] = []
        self.children[parent_of(d.path) if parent is None else parent].append(d.path)

    def add_file(self, f: File, parent: str | None = None) -> None:
        """Add `f` under `parent` (default: computed from its path)."""
        self.files[f.path] = f
        self.children[parent_of(f.path) if parent is None else parent].append(f.path)

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
