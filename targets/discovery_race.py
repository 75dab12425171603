"""discovery_race: readers first-touching undiscovered daxdev indices through lazy discovery.

Input   an odd byte 0: teardown against 1-3 readers (byte 1; the table lock); else byte 0's
        bit 1 adds a third reader (bits 2-7 its index), bytes 1-2 the index the first two
        readers' files live on (1-3), byte 3 which reader's GET_DAXDEV fails (or none); the
        rest is the schedule over CPUs and store drains
Checks  every lookup returns the device the log gave the index, or a clean EIO (IDX-LOOKUP,
        TBL-PUBLISH); every CPU finishes (a reader left waiting on the table's lock is
        IDX-LOOKUP); a successful read returns that device's bytes (DATA); a reader whose
        GET_DAXDEV failed gets EIO or the slot another reader installed, never a wrong device
Seeds   schedule streams (corpora/discovery_race/)
Masks   none
"""
from harness.cases.races import discovery_race_case
from harness.engine.registry import Target
from harness.faults import statecov  # noqa: F401 - loaded with the target, so atheris instruments it
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return discovery_race_case(data)


TARGET = Target(name="discovery_race", one_input=one_input, seeds=seeds.choice_streams, max_len=256,
                lookups=True)
