"""remade_fs: another node runs mkfs on the memory a client has mounted (famfs issue #135).

Input   bytes 0-4: files of the old file system, which of them the client read (fmaps cached), same
        device UUID, same log geometry, new files over the old files' pages; bytes 5-11: the order
        of the client's next actions (read, lookup, readdir, GET_FMAP, logplay)
Checks  every action on the old mount fails with ESTALE / FS-IDENTITY (no byte of the new file
        system through an old fmap, no old fmap or index table kept); a fresh mount reads the new
        file system's bytes (DATA)
Seeds   corpora/remade_fs/ (gen.seeds.remade_workloads)
Masks   none
"""
from harness.engine.registry import Target
from harness.cases.shm import remade_fs_case
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return remade_fs_case(data)


TARGET = Target(name="remade_fs", one_input=one_input, seeds=seeds.remade_workloads, max_len=12, lookups=True)
