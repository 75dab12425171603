"""external: another famfs implementation (a C fsck, logplay, a future daemon) run on image files.

Input   byte 0 even: a raw compact image (as log_replay; bytes whose superblock places no log are
        given to the program as they are); odd: a structured spec + any corruption operator; the
        images are written (sparse, on tmpfs) and handed to the command (engine.external)
Checks  the program's exit status (0 accept, 1 refuse), signals, hangs, failed asserts and
        sanitizer reports (ASan / UBSan / LSan: bug type, access, top frames -> one signature per
        distinct bug, tagged with the program); with --differential, its verdict and file set
        against our replay's (and NS-CONTAINED for a path that escapes)
Seeds   the log_replay seeds with byte 0 = 0, and choice streams with byte 0 = 1
Masks   none; needs `famfs-fuzz fuzz external --cmd 'PROGRAM ARGS {image}'`; `--engine afl` runs
        the same target under afl-fuzz on an afl-cc build (engine.afl, docs/external.md)
"""
from harness.cases.external import external_case
from harness.engine.registry import Target
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return external_case(data)


TARGET = Target(name="external", one_input=one_input, seeds=seeds.external_inputs, max_len=4096, timeout_s=30.0,
                needs_command=True)
