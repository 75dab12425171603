"""log_header: the 48-byte log header of a valid small image with a few entries.

Input   byte 0 bit 0: reseal the header CRC (fix-all) or leave it (raw); then the header bytes
Checks  replay's verdict == the model's (LOG-HEADER; a huge next_index must never be trusted)
Seeds   headers of generated specs
Masks   none
"""
from harness.cases.replay import replay_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds
from harness.gen.region import overlay


def one_input(data: bytes) -> int | None:
    image = overlay("log_header", data)
    return replay_case(image.device, image.size)


TARGET = Target(name="log_header", one_input=one_input, seeds=seeds.headers,
                mutator=mutate.region("log_header"), max_len=64)
