"""log_replay: raw bytes as a compact famfs image (superblock + log); replay on one node.

Input   gen.decode.log_image: superblock, then the log from its start; CRCs as the bytes have them
Checks  replay's verdict (typed rejections, where it stopped, table, namespace) == the model's
Seeds   compact images of generated specs and of the golden image (corpora/log_replay/)
Masks   none
"""
from harness.cases.replay import replay_case
from harness.engine.registry import Target
from harness.gen import decode, mutate, seeds


def one_input(data: bytes) -> int | None:
    image = decode.log_image(data, reuse=True)   # a scratch buffer: nothing keeps it past this case
    if image is None:                       # no placeable log region: uninteresting, not a crash
        return None
    return replay_case(image.device, image.size)


TARGET = Target(name="log_replay", one_input=one_input, seeds=seeds.compact_images,
                mutator=mutate.log_image, max_len=1 << 16)
