"""The image case: replay one primary image and hold it against the reference model; an image the
model accepts goes through fsck too, whose cross-file answer must equal the model's (log_replay,
log_header, superblock)."""
from __future__ import annotations


from harness.famfs.errors import FamfsError
from harness.famfs.replay import Replay, replay
from harness.oracle.case import check_replay
from harness.oracle.crossfile import check_fsck
from harness.oracle.model import verdict


def replay_case(device: bytearray, size: int, *, check_crc: bool = True) -> int:
    """Replay `device` (bytes through the log end; real size `size`) and check it against the model."""
    expected = verdict(device, size, check_crc=check_crc)
    try:
        got: object = replay(device, device_size=size, check_crc=check_crc)
    except FamfsError as e:
        got = e.with_traceback(None)        # a kept traceback's frames would hold the 10 MiB device
    check_replay(expected, got)             # in a cycle until the cyclic GC runs (log_replay's RSS)
    if isinstance(got, Replay):             # an accepted image goes through fsck too (the other
        sb = got.superblock                 # daxdevs are not on this node: no bounds to check there)
        check_fsck(expected, got, sb.log_offset + sb.log_len, [size])
    return 0
