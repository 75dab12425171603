"""Coverage for shared-memory states: what a client made of one state, as branches libFuzzer can see.

A state of `faults.shm` is chosen by the model, not by a branch of famfs, so famfs's line coverage
barely moves between a state where the counters are visible and one where they are not. Each
judged state calls `seen(op, outcome)`: one function per (operation kind, outcome), written out
so that each is its own edge (as `statecov`), called through a table. Outcomes: the client refused
the image (typed), showed the state before the operation, after it, needed its re-read after a
mismatch, refused a re-made file system; and `behind(op, n)`: the state held n lines (1, 2, 3+)
back from the master's newest versions. The atheris entry module instruments this module.
"""
from __future__ import annotations

OPS = ('mkfs', 'mkdir', 'file', 'add_daxdev', 'remkfs', 'fill')
OUTCOMES = ('refused', 'before', 'after', 'retried', 'identity')
REFUSED, BEFORE, AFTER, RETRIED, IDENTITY = range(5)


def _s00() -> None: return None
def _s01() -> None: return None
def _s02() -> None: return None
def _s03() -> None: return None
def _s04() -> None: return None
def _s05() -> None: return None
def _s06() -> None: return None
def _s07() -> None: return None
def _s10() -> None: return None
def _s11() -> None: return None
def _s12() -> None: return None
def _s13() -> None: return None
def _s14() -> None: return None
def _s15() -> None: return None
def _s16() -> None: return None
def _s17() -> None: return None
def _s20() -> None: return None
def _s21() -> None: return None
def _s22() -> None: return None
def _s23() -> None: return None
def _s24() -> None: return None
def _s25() -> None: return None
def _s26() -> None: return None
def _s27() -> None: return None
def _s30() -> None: return None
def _s31() -> None: return None
def _s32() -> None: return None
def _s33() -> None: return None
def _s34() -> None: return None
def _s35() -> None: return None
def _s36() -> None: return None
def _s37() -> None: return None
def _s40() -> None: return None
def _s41() -> None: return None
def _s42() -> None: return None
def _s43() -> None: return None
def _s44() -> None: return None
def _s45() -> None: return None
def _s46() -> None: return None
def _s47() -> None: return None
def _s50() -> None: return None
def _s51() -> None: return None
def _s52() -> None: return None
def _s53() -> None: return None
def _s54() -> None: return None
def _s55() -> None: return None
def _s56() -> None: return None
def _s57() -> None: return None

_TABLE = (
    _s00,
    _s01,
    _s02,
    _s03,
    _s04,
    _s05,
    _s06,
    _s07,
    _s10,
    _s11,
    _s12,
    _s13,
    _s14,
    _s15,
    _s16,
    _s17,
    _s20,
    _s21,
    _s22,
    _s23,
    _s24,
    _s25,
    _s26,
    _s27,
    _s30,
    _s31,
    _s32,
    _s33,
    _s34,
    _s35,
    _s36,
    _s37,
    _s40,
    _s41,
    _s42,
    _s43,
    _s44,
    _s45,
    _s46,
    _s47,
    _s50,
    _s51,
    _s52,
    _s53,
    _s54,
    _s55,
    _s56,
    _s57,
)


def seen(op: int, outcome: int) -> None:
    """The edge of (operation kind, outcome)."""
    _TABLE[op * 8 + outcome]()


def behind(op: int, n: int) -> None:
    """The edge of (operation kind, lines held back: 1, 2, 3 or more); nothing for 0."""
    if n > 0:
        _TABLE[op * 8 + 4 + min(n, 3)]()
