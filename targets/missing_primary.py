"""missing_primary: images with no usable index 0, and nodes missing devices.

Input   gen.decode.spec + a missing_primary operator (ADD_DAXDEV claiming index 0 or the primary's
        UUID) + a node view that may hand a secondary in as primary or lack secondaries
Checks  replay == model (IDX-PRIMARY, IDX-UUID-UNIQUE, SB-VALID); files on missing devices fail
        cleanly (EIO) while the rest reads correctly; every index lookup
Seeds   choice streams (corpora/missing_primary/)
Masks   none
"""
from harness.cases.node import structured_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    return structured_case(data, family="missing_primary", wrong_primary=True, missing=True)


TARGET = Target(name="missing_primary", one_input=one_input, seeds=seeds.choice_streams,
                mutator=mutate.choice_stream(), max_len=512,
                lookups=True)
