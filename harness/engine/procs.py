"""Signals to a process known only by its pid and a `poll`: the mount's fork server's children and
the Atheris zygote's jobs answer the part of `subprocess.Popen` a campaign uses through it."""
from __future__ import annotations

import os
import signal


class Signals:
    """`send_signal`, `terminate` and `kill` of a Popen-like process known by `pid` and `poll`
    (a signal only while it has not ended: a reaped pid may be another process's)."""

    pid: int

    def poll(self) -> int | None:
        raise NotImplementedError

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)
