"""daemon_kill: SIGKILL the mount's daemon at a chosen point, recover, and compare.

Input   gen.decode.spec (valid image, no corruption) + the kill point: idle, mid-read (a reader
        thread in flight), or mid-reload
Checks  recovery works (the dead mount is detected and cleaned, a new daemon mounts and replays),
        the namespace served after equals the one before, every file's bytes, every lookup
Seeds   choice streams (corpora/daemon_kill/)
Masks   the kill itself is the fault plan, not a finding; a daemon that does not come back is
"""
from harness.cases.mount import DEV_SIZE, NDEV, kill_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    return kill_case(data)


FLAT_WHY = ('the daemon under test runs in a forked mount child whose coverage libFuzzer does not see '
            '(cov 118: the fuzzing side of famfs, image building and the checks), and a case kills and '
            'remounts it (6 cases/s a job here): a 30 s run over 2 jobs grew ft 359 -> 413, a share of a '
            'few seconds may end before a new feature')


TARGET = Target(name="daemon_kill", one_input=one_input, seeds=seeds.choice_streams,
                mutator=mutate.choice_stream(max_devices=NDEV, dev_sizes=(DEV_SIZE,)), max_len=256, timeout_s=30.0,
                uses_fuse=True,
                lookups=True, flat_why=FLAT_WHY)
