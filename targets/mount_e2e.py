"""mount_e2e: generated, corrupted images swapped under a real FUSE mount served by a child daemon.

Input   gen.decode.spec (choice bytes) + optional corruption, written into shared device files
Checks  the mount serves exactly the model's verdict: a refused image as the same invariant, else
        the root listing and every file's bytes (read(2) through FUSE, GET_FMAP, the daxdev table,
        DAX memory) equal the bytes at the model's extents; every lookup in the daemon's probe log
Seeds   choice streams (corpora/mount_e2e/)
Masks   none; the daemon's death is a finding (DaemonDied), not the harness's
"""
from harness.cases.mount import DEV_SIZE, NDEV, e2e_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    return e2e_case(data)


TARGET = Target(name="mount_e2e", one_input=one_input, seeds=seeds.choice_streams,
                mutator=mutate.choice_stream(max_devices=NDEV, dev_sizes=(DEV_SIZE,)), max_len=512, timeout_s=20.0,
                uses_fuse=True,
                lookups=True)
