"""fmap_wire: the kernel side parsing arbitrary GET_FMAP replies, then reading through them.

Input   byte 0 picks the ABI generation; the rest is the GET_FMAP reply for one file. GET_DAXDEV
        is answered correctly for three present devices; other indices are missing on the node
Checks  the kernel accepts exactly the replies oracle.wire_rules allows; reads at chosen offsets
        either fail with a typed error or return the bytes at the resolved extents; every lookup
Seeds   encoded replies of the generated specs' files under each generation
Masks   none
"""
from harness.cases.wire_reply import wire_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    if not data:
        return None
    return wire_case(data[0], data[1:])


TARGET = Target(name="fmap_wire", one_input=one_input, seeds=seeds.fmap_replies, mutator=mutate.fmap_reply,
                max_len=4096, value_profile=True,     # its checks compare counts and indices with limits
                lookups=True)
