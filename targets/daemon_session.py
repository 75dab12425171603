"""daemon_session: a live session, master appending while two client daemons replay and read.

Input   steps chosen by the bytes (engine.session.run_choices: mkdir, create, add a daxdev,
        logplay, read, restart a client daemon); under Hypothesis the same steps
        are a RuleBasedStateMachine (engine.session.SessionMachine, tests/targets)
Checks  after every step: each client's files == the master's, its index table == the master's
        (IDX-CLUSTER), bytes read == bytes written (DATA), every index lookup (IDX-LOOKUP)
Seeds   step streams (corpora/daemon_session/)
Masks   a client that has not replayed yet lacks the newest files: only its prefix is compared
"""
from harness.engine.registry import Target
from harness.cases.session import run_choices, strategy
from harness.gen import seeds


def one_input(data: bytes) -> int | None:
    return run_choices(data)


TARGET = Target(name="daemon_session", one_input=one_input, seeds=seeds.choice_streams, strategy=strategy(),
                max_len=96, timeout_s=5.0,
                lookups=True)
