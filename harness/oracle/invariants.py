"""The invariant catalog: every ID of docs/architecture.md, its text, where it is checked, and the finding type.

The IDs themselves are `harness.famfs.invariants.Invariant` (famfs must name the rule it rejects
by, and it imports nothing from the harness); this module adds what the harness needs to know
about each: which layer enforces it and which part of the oracle checks it.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.famfs.invariants import Invariant

__all__ = ["Invariant", "InvariantViolation", "CATALOG", "Entry"]


@dataclass(frozen=True, slots=True)
class Entry:
    """Catalog entry: the invariant, the layer that enforces it, the oracle part that checks it."""

    invariant: Invariant
    enforced_by: str
    checked_by: str


CATALOG: dict[Invariant, Entry] = {e.invariant: e for e in (
    Entry(Invariant.SB_VALID, "replay.check_superblock", "model.verdict"),
    Entry(Invariant.LOG_HEADER, "replay.check_header", "model.verdict"),
    Entry(Invariant.LOG_PREFIX, "replay.replay", "model.verdict"),
    Entry(Invariant.ENTRY_TYPE, "replay._Player.apply", "model.verdict"),
    Entry(Invariant.FMAP_SHAPE, "replay._Player shape checks; kernel._validate", "model.verdict"),
    Entry(Invariant.EXT_BOUNDS, "replay._Player.bounds; devices bounds", "model.verdict"),
    Entry(Invariant.EXT_OVERLAP, "fsck.fsck", "tests (fsck collisions)"),
    Entry(Invariant.NS_CONTAINED, "replay._Player.path", "model.verdict"),
    Entry(Invariant.NS_CONFLICT, "replay._Player.place", "model.verdict"),
    Entry(Invariant.IDX_PRIMARY, "replay.check_superblock; index.IndexTable.add", "model.verdict; lookups"),
    Entry(Invariant.IDX_DENSE, "index.IndexTable.add", "model.verdict"),
    Entry(Invariant.IDX_UUID_UNIQUE, "index.IndexTable.add", "model.verdict"),
    Entry(Invariant.IDX_DEFINED_BEFORE_USE, "replay._Player.file", "model.verdict"),
    Entry(Invariant.IDX_CLUSTER, "the log is shared by every node", "lookups.LookupChecker"),
    Entry(Invariant.IDX_RESOLVE, "devices resolver", "lookups.LookupChecker"),
    Entry(Invariant.IDX_LOOKUP, "kernel.KernelMount.lookup", "lookups.LookupChecker"),
    Entry(Invariant.TBL_PUBLISH, "daxtable.DaxdevTable.install", "lookups.LookupChecker"),
    Entry(Invariant.DATA, "kernel.KernelMount.read", "case data comparison"),
    Entry(Invariant.SHM_CONVERGE, "image: flush and fence; daemon.refresh: invalidate, re-read on a CRC mismatch",
          "faults.shm states, cases.shm_states_case"),
    Entry(Invariant.FS_IDENTITY, "daemon.Daemon: the mounted superblock re-checked", "cases.remade_fs_case"),
)}


class InvariantViolation(Exception):
    """The oracle's finding: famfs broke `invariant` (not a typed rejection, a bug).

    `op` is the operation whose outcome was wrong ("read", "lookup", "replay", "readdir", ...) and
    `site` where in famfs the wrong value came from (the lookup path, the ABI generation and fmap
    form a read went through, the replay check): both go into the crash signature, so two bugs
    breaking one invariant in different places land in different folders. They must be stable
    across runs: names only, never sizes, offsets, line numbers or addresses."""

    def __init__(self, invariant: Invariant, message: str, *, op: str = "", site: str = ""):
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.message = message
        self.op = op
        self.site = site
        self.counts: int = 0                # lookups the case had judged (a LookupChecker attaches its Counts)

    @property
    def where(self) -> str:
        """'op@site' (or whichever of the two is known; '' if neither)."""
        return "@".join(p for p in (self.op, self.site) if p)
