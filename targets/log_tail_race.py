"""log_tail_race: a client replays while the master appends; every visible store state checked.

Input   the workload: 1-3 appends (mkdir, file, ADD_DAXDEV); for each append every state weak memory
        can show a reader (faults.logtail: any subset of stores between barriers) is replayed
Checks  no partial entry is ever applied, next_index never covers an incomplete entry (LOG-PREFIX),
        and the finished log replays every entry
Seeds   workload streams (corpora/log_tail_race/)
Masks   none. tests/faults shows that storing the counters before the entry is found
"""
from harness.cases.races import log_tail_case
from harness.engine.registry import Target
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return log_tail_case(data)


FLAT_WHY = ('its whole input space is 1-3 appends of 3 kinds (39 workloads), each run over every '
            'store order a reader may see; the seeds hold them all')

TARGET = Target(name="log_tail_race", one_input=one_input, seeds=seeds.choice_streams, max_len=64, flat_why=FLAT_WHY)
