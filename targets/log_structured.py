"""log_structured: a generated spec, corrupted by any operator, mounted and read on one node.

Input   gen.decode.spec (choice bytes) + corruption seed + node view (names, order)
Checks  replay == model; every file read through the kernel side == the bytes at its extents;
        every index lookup (IDX-LOOKUP, IDX-CLUSTER, TBL-PUBLISH)
Seeds   choice streams of assorted shapes (corpora/log_structured/)
Masks   none
"""
from harness.cases.node import structured_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    return structured_case(data, family=None)


TARGET = Target(name="log_structured", one_input=one_input, seeds=seeds.choice_streams,
                mutator=mutate.choice_stream(), max_len=512,
                lookups=True)
