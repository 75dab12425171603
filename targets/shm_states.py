"""shm_states: every state of shared memory a client node (or a crash) may see while the master works.

Input   a workload stream (cases.shm): mkfs, then 1-4 of mkdir, file, ADD_DAXDEV, mkfs again
        under a mount, appends until the log is full; per operation a fresh or a running client; and,
        where the model admits more states than are run, which states (faults.shm: stores, flushes
        and fences at 64-byte lines, pruned to what the protocol leaves unordered)
Checks  LOG-PREFIX (no partial entry applied), IDX-CLUSTER (no index from a half-visible
        ADD_DAXDEV; each index the master's UUID), DATA of every visible file, SHM-CONVERGE
        (after the flushes and fences the client shows the master's namespace), FS-IDENTITY
Seeds   short workloads with fresh clients (corpora/shm_states/); running mounts, ADD_DAXDEV,
        re-made file systems and a full log are left for the search to find
Masks   none
"""
from harness.engine.registry import Target
from harness.cases.shm import shm_states_case
from harness.faults import shmcov  # noqa: F401 - loaded with the target, so atheris instruments it
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return shm_states_case(data)


TARGET = Target(name="shm_states", one_input=one_input, seeds=seeds.shm_workloads, max_len=128, lookups=True,
                timeout_s=10.0)   # a workload of four operations with running clients: about 1 s uninstrumented
