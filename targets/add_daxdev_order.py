"""add_daxdev_order: out-of-order, duplicated, gapped and use-before-define ADD_DAXDEV entries.

Input   gen.decode.spec + a transplant operator of the add_daxdev_order family + node view
Checks  replay == model (IDX-DENSE, IDX-UUID-UNIQUE, IDX-DEFINED-BEFORE-USE, ...); reads and every
        index lookup on the node
Seeds   choice streams with several devices (corpora/add_daxdev_order/)
Masks   none
"""
from harness.cases.node import structured_case
from harness.engine.registry import Target
from harness.gen import mutate, seeds


def one_input(data: bytes) -> int | None:
    return structured_case(data, family="add_daxdev_order", min_devices=2)


TARGET = Target(name="add_daxdev_order", one_input=one_input, seeds=seeds.choice_streams,
                mutator=mutate.choice_stream(min_devices=2), max_len=512,
                lookups=True)
