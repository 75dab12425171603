"""A probe that writes every event as one JSON line, so a daemon in another process can be checked.

`famfs-fuzz mount --probe-log FILE` attaches it; the harness reads the file back (`load`) and
feeds the lookups and internal errors (with the daemon's traceback text) to the oracle's
`LookupChecker` (`replay_into`), which keeps the daemon's process free of any checking code.
Lines are flushed as they are written, so a killed daemon loses at most the line it was writing
(`load` skips a torn last line).
"""
from __future__ import annotations

import json
import os
import traceback
from typing import IO, Any

from harness.famfs.ids import Uuid, uuid_str
from harness.famfs.probe import Probe
from harness.oracle.lookups import InternalError, LookupChecker


class JsonlProbe(Probe):
    """Appends one JSON object per event to a file."""

    enabled = True

    def __init__(self, path: str):
        self._f: IO[str] = open(path, "a", buffering=1)

    def _w(self, ev: str, **fields: Any) -> None:
        self._f.write(json.dumps({"ev": ev, **fields}) + "\n")

    def lookup(self, node: str, index: int, name: str | None, devno: int, errno: int) -> None:
        self._w("lookup", node=node, index=index, name=name, devno=devno, errno=errno)

    def slot_published(self, node: str, index: int, name: str | None, valid: bool) -> None:
        self._w("slot_published", node=node, index=index, name=name, valid=valid)

    def index_assigned(self, index: int, uuid: Uuid, size: int, entry: int | None) -> None:
        self._w("index_assigned", index=index, uuid=uuid_str(uuid), size=size, entry=entry)

    def device_resolved(self, node: str, uuid: Uuid, name: str | None) -> None:
        self._w("device_resolved", node=node, uuid=uuid_str(uuid), name=name)

    def rejected(self, error: Any) -> None:
        self._w("rejected", **error.as_dict())

    def internal_error(self, where: str, error: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self._w("internal_error", where=where, type=type(error).__name__, error=str(error), traceback=tb)

    def close(self) -> None:
        self._f.close()


class Tail:
    """Reads a probe log as it grows: each `new()` returns the complete event lines written since
    the last call (a torn last line waits for its end: a killed daemon's is never returned)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = path
        self.at = 0

    def new(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not os.path.exists(self.path):
            return out
        with open(self.path, "rb") as f:
            f.seek(self.at)
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    break
                self.at += len(line)
                out.append(ev)
        return out


def load(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete event line of `path` (a torn last line is dropped); any JSON-lines file
    written line by line by a process that may die (the real-DAX guest's outcomes too)."""
    return Tail(path).new()


def replay_into(checker: LookupChecker, events: list[dict[str, Any]]) -> None:
    """Hand the recorded lookups and internal errors to `checker` as if it had been the probe."""
    for e in events:
        if e["ev"] == "lookup":
            checker.lookup(e["node"], e["index"], e["name"], e["devno"], e["errno"])
        elif e["ev"] == "internal_error":
            checker.internal.append(InternalError(e.get("where", "?"), e.get("type", "Exception"),
                                                  e.get("error", ""), e.get("traceback", "")))
