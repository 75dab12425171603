"""superblock: the first 200 bytes of a primary over an otherwise valid small image.

Input   byte 0 bit 0: reseal the superblock CRC (fix-all) or leave it (raw); then the superblock
Checks  replay's verdict == the model's (SB-VALID, IDX-PRIMARY, and everything after them)
Seeds   superblocks of generated specs, resealed and not
Masks   none
"""
from harness.cases.replay import replay_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds
from harness.gen.region import overlay


def one_input(data: bytes) -> int | None:
    image = overlay("superblock", data)
    return replay_case(image.device, image.size)


FLAT_WHY = ("its input is one 200-byte region over a fixed valid image; the superblock's few checks "
            '(magic, version, CRC, allocation unit, log bounds, flags) are all reached by its seeds')

TARGET = Target(name="superblock", one_input=one_input, seeds=seeds.superblocks,
                mutator=mutate.region("superblock"), max_len=256, flat_why=FLAT_WHY)
