"""The probe: the one interface through which famfs reports what it did; a no-op by default.

famfs calls one method per event; the base class does nothing, so a daemon with the probe off pays
only a method call (and hot loops test `enabled` first, after trio's Instruments). The harness
subclasses it to *record* events; the oracle checks the records after the operation returns, so no
`except` inside famfs can ever hide a finding.
"""
from __future__ import annotations

from typing import Any

from harness.famfs.ids import Uuid


class Probe:
    """Receives famfs events. Every method is a documented no-op; subclasses record."""

    enabled = False

    def index_assigned(self, index: int, uuid: Uuid, size: int, entry: int | None) -> None:
        """Replay defined daxdev `index` as `uuid` (entry None: the primary, from the superblock)."""

    def device_resolved(self, node: str, uuid: Uuid, name: str | None) -> None:
        """On `node`, `uuid` resolved to local device `name` (None: cleanly missing)."""

    def slot_published(self, node: str, index: int, name: str | None, valid: bool) -> None:
        """The kernel side set the valid flag of daxdev table slot `index` (after its barrier)."""

    def lookup(self, node: str, index: int, name: str | None, devno: int, errno: int) -> None:
        """The kernel side looked up slot `index` on `node`: the node-local device name and dev_t it
        got, or errno != 0 (name None). The oracle maps the name to a UUID on its own."""

    def extent_resolved(self, node: str, path: str, offset: int, index: int, dev_offset: int, length: int) -> None:
        """A file offset resolved to (index, device offset) for `length` bytes."""

    def rejected(self, error: Any) -> None:
        """famfs refused input with a typed `FamfsError` (recorded, not raised, by replay)."""

    def internal_error(self, where: str, error: BaseException) -> None:
        """Something other than a FamfsError escaped a famfs handler (a bug in the system under test).
        `error` keeps its traceback: a recorder keeps its text, and the harness files it as a
        finding of its own, signed by the famfs frames of that traceback."""


NULL_PROBE = Probe()
