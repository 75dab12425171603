"""State coverage for schedules: the interleaving a race explores, as branches libFuzzer can see.

A race target's decisions are made by the scheduler (which CPU steps, which buffered store drains),
not by branches of the system under test, so line coverage of `harness.famfs` stays flat however
different the explored interleavings are (publish_order ran with cov 22). This module turns each
scheduled step into an edge: `pair(prev, cur)` has one distinct branch per (previous step kind,
this step kind) and `pending(cur, n)` one per (step kind, stores still buffered: 0, 1, 2, 3+):
each is a function of its own, called through a table, so the signal costs one call and no
comparison (Atheris traces every comparison of an instrumented module).
libFuzzer counts each edge's hits in buckets (1, 2, 3, 4-7, ...), so a schedule that makes a
reader load a valid slot right after the valid flag drained, or loads while two stores are still
buffered, is new coverage and is kept. The atheris entry module instruments this module (and only
this one outside `harness.famfs`); elsewhere the calls cost a few comparisons.

The functions are written out on purpose: one shared function would be one edge for every pair.
Step kinds are the `KINDS` below; `faults.schedule` classifies its trace lines into them.
"""
from __future__ import annotations


OTHER = 0
STORE = 1
WMB = 2
STORE_VALID = 3
LOAD_INVALID = 4
LOAD_VALID = 5
LOAD_FIELD = 6
DRAIN = 7
DRAIN_VALID = 8
KINDS = ('other', 'store', 'wmb', 'store_valid', 'load_invalid', 'load_valid', 'load_field', 'drain', 'drain_valid')

N = len(KINDS)


def _p00() -> None: return None
def _p01() -> None: return None
def _p02() -> None: return None
def _p03() -> None: return None
def _p04() -> None: return None
def _p05() -> None: return None
def _p06() -> None: return None
def _p07() -> None: return None
def _p08() -> None: return None

def _p10() -> None: return None
def _p11() -> None: return None
def _p12() -> None: return None
def _p13() -> None: return None
def _p14() -> None: return None
def _p15() -> None: return None
def _p16() -> None: return None
def _p17() -> None: return None
def _p18() -> None: return None

def _p20() -> None: return None
def _p21() -> None: return None
def _p22() -> None: return None
def _p23() -> None: return None
def _p24() -> None: return None
def _p25() -> None: return None
def _p26() -> None: return None
def _p27() -> None: return None
def _p28() -> None: return None

def _p30() -> None: return None
def _p31() -> None: return None
def _p32() -> None: return None
def _p33() -> None: return None
def _p34() -> None: return None
def _p35() -> None: return None
def _p36() -> None: return None
def _p37() -> None: return None
def _p38() -> None: return None

def _p40() -> None: return None
def _p41() -> None: return None
def _p42() -> None: return None
def _p43() -> None: return None
def _p44() -> None: return None
def _p45() -> None: return None
def _p46() -> None: return None
def _p47() -> None: return None
def _p48() -> None: return None

def _p50() -> None: return None
def _p51() -> None: return None
def _p52() -> None: return None
def _p53() -> None: return None
def _p54() -> None: return None
def _p55() -> None: return None
def _p56() -> None: return None
def _p57() -> None: return None
def _p58() -> None: return None

def _p60() -> None: return None
def _p61() -> None: return None
def _p62() -> None: return None
def _p63() -> None: return None
def _p64() -> None: return None
def _p65() -> None: return None
def _p66() -> None: return None
def _p67() -> None: return None
def _p68() -> None: return None

def _p70() -> None: return None
def _p71() -> None: return None
def _p72() -> None: return None
def _p73() -> None: return None
def _p74() -> None: return None
def _p75() -> None: return None
def _p76() -> None: return None
def _p77() -> None: return None
def _p78() -> None: return None

def _p80() -> None: return None
def _p81() -> None: return None
def _p82() -> None: return None
def _p83() -> None: return None
def _p84() -> None: return None
def _p85() -> None: return None
def _p86() -> None: return None
def _p87() -> None: return None
def _p88() -> None: return None

def _q00() -> None: return None
def _q01() -> None: return None
def _q02() -> None: return None
def _q03() -> None: return None

def _q10() -> None: return None
def _q11() -> None: return None
def _q12() -> None: return None
def _q13() -> None: return None

def _q20() -> None: return None
def _q21() -> None: return None
def _q22() -> None: return None
def _q23() -> None: return None

def _q30() -> None: return None
def _q31() -> None: return None
def _q32() -> None: return None
def _q33() -> None: return None

def _q40() -> None: return None
def _q41() -> None: return None
def _q42() -> None: return None
def _q43() -> None: return None

def _q50() -> None: return None
def _q51() -> None: return None
def _q52() -> None: return None
def _q53() -> None: return None

def _q60() -> None: return None
def _q61() -> None: return None
def _q62() -> None: return None
def _q63() -> None: return None

def _q70() -> None: return None
def _q71() -> None: return None
def _q72() -> None: return None
def _q73() -> None: return None

def _q80() -> None: return None
def _q81() -> None: return None
def _q82() -> None: return None
def _q83() -> None: return None

_PAIRS = (
    _p00, _p01, _p02, _p03, _p04, _p05, _p06, _p07, _p08, _p10, _p11, _p12, _p13, _p14, _p15, _p16,
    _p17, _p18, _p20, _p21, _p22, _p23, _p24, _p25, _p26, _p27, _p28, _p30, _p31, _p32, _p33, _p34,
    _p35, _p36, _p37, _p38, _p40, _p41, _p42, _p43, _p44, _p45, _p46, _p47, _p48, _p50, _p51, _p52,
    _p53, _p54, _p55, _p56, _p57, _p58, _p60, _p61, _p62, _p63, _p64, _p65, _p66, _p67, _p68, _p70,
    _p71, _p72, _p73, _p74, _p75, _p76, _p77, _p78, _p80, _p81, _p82, _p83, _p84, _p85, _p86, _p87,
    _p88,
)

_PENDING = (
    _q00, _q01, _q02, _q03, _q10, _q11, _q12, _q13, _q20, _q21, _q22, _q23, _q30, _q31, _q32, _q33,
    _q40, _q41, _q42, _q43, _q50, _q51, _q52, _q53, _q60, _q61, _q62, _q63, _q70, _q71, _q72, _q73,
    _q80, _q81, _q82, _q83,
)



def pair(prev: int, cur: int) -> None:
    """The edge of (previous step kind, this step kind)."""
    _PAIRS[prev * N + cur]()


def pending(cur: int, n: int) -> None:
    """The edge of (step kind, stores still buffered: 0, 1, 2, 3 or more)."""
    _PENDING[cur * 4 + min(n, 3)]()
