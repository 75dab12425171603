"""The crash store: one folder per (target, signature) under a root, written atomically.

`root/<target>/<key>/` holds `title`, `crash.json` (target, signature, traceback, seed, mode,
versions, first/last seen, count, reproduction rate, repro command, extra), `input` (the first
input that hit it), `minimized` (once minimized) and `samples/` (later inputs: the first SAMPLES_FIRST distinct ones
are kept for good, the most recent SAMPLES after them in a ring, so the evidence that a folder
holds two bugs does not rotate out).
Every file is written as a temporary file in its destination directory and renamed into place;
a new crash's folder is built under a temporary name and renamed whole, so a harness killed at
any moment leaves every crash folder complete. Read-modify-write of `crash.json` holds an flock
on the target's lock file, so parallel jobs never lose a count.
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.engine.errors import HarnessError
from harness.engine.signature import Signature

SAMPLES = 32                # the ring of the most recent distinct samples
SAMPLES_FIRST = 8           # ... after the first distinct samples, which are never dropped


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    try:
        from importlib.metadata import version
        pkg = version("famfs-fuzz")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        pkg = "unknown"
    return {"python": sys.version.split()[0], "famfs-fuzz": pkg, "platform": platform.platform()}


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class CrashRecord:
    """A crash folder read back."""

    path: Path
    target: str
    key: str
    title: str
    signature: dict[str, Any]
    count: int
    first_seen: str
    last_seen: str
    reproduced: str | None
    repro: str
    mode: str
    seed: int | None
    traceback: str
    input: bytes
    minimized: bytes | None
    extra: dict[str, Any]


class CrashStore:
    """A small database of crash folders under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._dirs: dict[str, Path] = {}         # target -> its directory, when opened by folder

    @classmethod
    def of_folder(cls, folder: Path) -> tuple["CrashStore", str, str]:
        """The store holding crash folder `folder`, wherever it lies (a CI artifact, a copy in a
        bug report), with the target named by its own `crash.json` and the folder's name as key."""
        folder = Path(folder).resolve()
        try:
            doc = json.loads((folder / "crash.json").read_text())
            target = doc["target"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HarnessError(f"{folder}: not a crash folder "
                               f"(crash.json unreadable or names no target: {e})") from None
        if not isinstance(target, str) or not target:
            raise HarnessError(f"{folder}: crash.json names no target")
        store = cls(folder.parent.parent)
        store._dirs = {target: folder.parent}
        return store, target, folder.name

    def _dir(self, target: str) -> Path:
        """The directory holding `target`'s crash folders (root/<target> unless opened by folder)."""
        return self._dirs.get(target, self.root / target)

    @contextmanager
    def _locked(self, target: str) -> Iterator[Path]:
        d = self._dir(target)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save(self, target: str, signature: Signature, data: bytes, *, traceback: str = "", seed: int | None = None,
             mode: str = "", repro_cmd: str = "", extra: dict[str, Any] | None = None) -> tuple[Path, bool]:
        """Record one hit of `signature`: a new folder, or count + sample in the existing one."""
        with self._locked(target) as d:
            folder = d / signature.key
            now = _now()
            if (folder / "crash.json").exists():
                doc = json.loads((folder / "crash.json").read_text())
                doc["count"] += 1
                doc["last_seen"] = now
                self._sample(folder, data)
                atomic_write(folder / "crash.json", json.dumps(doc, indent=2).encode())
                return folder, False
            tmp = Path(tempfile.mkdtemp(dir=d, prefix=f".new-{signature.key}-"))
            doc = {"target": target, "signature": signature.as_dict(), "title": signature.title,
                   "traceback": traceback, "seed": seed, "mode": mode, "versions": _versions(),
                   "first_seen": now, "last_seen": now, "count": 1, "reproduced": None,
                   "repro": repro_cmd, "extra": extra or {}}
            atomic_write(tmp / "input", data)
            atomic_write(tmp / "title", (signature.title + "\n").encode())
            atomic_write(tmp / "crash.json", json.dumps(doc, indent=2).encode())
            if folder.exists():                      # a torn earlier attempt without crash.json
                shutil.rmtree(folder)
            os.replace(tmp, folder)
            return folder, True

    def _sample(self, folder: Path, data: bytes) -> None:
        samples = folder / "samples"
        samples.mkdir(exist_ok=True)
        name = samples / hashlib.sha1(data).hexdigest()
        if name.exists():
            return
        kept = sorted((p for p in samples.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
        first = [p for p in kept if p.name.startswith("first-")]
        if len(first) < SAMPLES_FIRST:
            name = samples / f"first-{name.name}"
            if name.exists():
                return
            atomic_write(name, data)
            return
        if (samples / f"first-{name.name}").exists():
            return
        atomic_write(name, data)
        ring = [p for p in kept if not p.name.startswith("first-")] + [name]
        for old in ring[:-SAMPLES]:
            old.unlink()

    def fetch(self, target: str, key: str) -> CrashRecord:
        folder = self._dir(target) / key
        try:
            doc = json.loads((folder / "crash.json").read_text())
            data = (folder / "input").read_bytes()
        except (OSError, ValueError) as e:
            raise HarnessError(f"{folder}: not a readable crash folder ({e})") from None
        mini = folder / "minimized"
        return CrashRecord(folder, target, key, doc["title"], doc["signature"], doc["count"], doc["first_seen"],
                           doc["last_seen"], doc.get("reproduced"), doc.get("repro", ""), doc.get("mode", ""),
                           doc.get("seed"), doc.get("traceback", ""), data,
                           mini.read_bytes() if mini.exists() else None, doc.get("extra", {}))

    def list(self, target: str | None = None) -> list[CrashRecord]:
        out = []
        if target:
            targets = [target]
        else:
            targets = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for t in targets:
            d = self._dir(t)
            if d.is_dir():
                out += [self.fetch(t, p.name) for p in sorted(d.iterdir())
                        if p.is_dir() and not p.name.startswith(".") and (p / "crash.json").exists()]
        return out

    def _update(self, target: str, key: str, **fields: Any) -> None:
        with self._locked(target) as d:
            path = d / key / "crash.json"
            doc = json.loads(path.read_text())
            doc.update(fields)
            atomic_write(path, json.dumps(doc, indent=2).encode())

    def set_minimized(self, target: str, key: str, data: bytes) -> None:
        atomic_write(self._dir(target) / key / "minimized", data)

    def set_reproduced(self, target: str, key: str, k: int, n: int) -> None:
        self._update(target, key, reproduced=f"{k}/{n}")

    def delete(self, target: str, key: str) -> None:
        with self._locked(target) as d:
            shutil.rmtree(d / key, ignore_errors=True)

    def move_to_regress(self, target: str, key: str, corpora_root: Path) -> Path:
        """A fixed crash: its (minimized) input goes to corpora/<target>/regress/<key>, then the
        folder is deleted (input first, so nothing is lost if we die in between)."""
        rec = self.fetch(target, key)
        dest_dir = Path(corpora_root) / target / "regress"
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / key
        atomic_write(dest, rec.minimized if rec.minimized is not None else rec.input)
        self.delete(target, key)
        return dest


class ReadOnlyCrashStore(CrashStore):
    """A crash store CI may read but not change."""

    def _refuse(self, *a: Any, **k: Any) -> Any:
        raise HarnessError(f"crash store {self.root} is read-only")

    save = _refuse
    set_minimized = _refuse
    set_reproduced = _refuse
    delete = _refuse
    move_to_regress = _refuse
