"""engine/forkserver.py: a forked `famfs-fuzz` verb behaves as the new interpreter would for the
mount drivers: its output on `stdout`, its exit status from `poll`/`wait`, signals delivered, a
timeout raised as `subprocess.TimeoutExpired`."""
from __future__ import annotations

import signal
import subprocess

import pytest

from harness.engine import forkserver


def test_a_forked_verb_prints_and_exits_like_the_cli():
    child = forkserver.spawn(["targets"])
    lines = child.stdout.read().splitlines()
    assert child.wait(timeout=30) == 0
    assert any(line.startswith("log_replay") for line in lines)
    assert child.poll() == 0


def test_a_forked_child_is_killed_and_reaped_and_a_wait_can_time_out():
    child = forkserver.spawn(["bench", "--no-fuse", "--repeat", "50"])     # runs for many seconds
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.05)
    assert child.poll() is None
    child.kill()
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.kill()                                          # a dead child: nothing to signal, no error


def test_a_failing_verb_gives_its_exit_code():
    child = forkserver.spawn(["replay", "/nonexistent/image"])
    out = child.stdout.read()
    assert child.wait(timeout=30) == 2 and "famfs-fuzz" in out
