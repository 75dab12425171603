"""device_faults: one device of a node misbehaves (syzkaller fail_nth style).

Input   gen.decode.spec + which device, and the fault: fail its n-th open, map or read, poison a
        page range, or make it vanish
Checks  files on the faulty device fail with a typed error or read right; every other file reads
        right; every lookup (IDX-LOOKUP); a fault on the primary may refuse the mount, cleanly
Seeds   choice streams (corpora/device_faults/)
Masks   files on the faulty device may fail (that is the expected, clean behaviour)
"""
from harness.cases.device_faults import device_fault_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    return device_fault_case(data)


TARGET = Target(name="device_faults", one_input=one_input, seeds=seeds.choice_streams,
                mutator=mutate.choice_stream(min_devices=2), max_len=512,
                lookups=True)
