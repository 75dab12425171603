"""publish_order: the daxdev table's slot publish (fill, wmb, valid) against readers on weak memory.

Input   bytes 0-1: readers and reads each; the rest chooses, step by step, which CPU runs next or
        which buffered store becomes visible (faults.schedule, faults.memory)
Checks  a lookup that sees valid=1 sees devno, device and name (TBL-PUBLISH); IDX-LOOKUP
Seeds   schedule streams (corpora/publish_order/)
Masks   none. tests/faults shows the same target, with the barrier removed or valid stored first,
        finds TBL-PUBLISH with a schedule of a handful of steps
"""
from harness.cases.races import publish_order_case
from harness.engine.registry import Target
from harness.faults import statecov  # noqa: F401 - loaded with the target, so atheris instruments it
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return publish_order_case(data)


TARGET = Target(name="publish_order", one_input=one_input, seeds=seeds.choice_streams, max_len=256,
                lookups=True)
