"""Atheris jobs forked from one process that imported and instrumented famfs once.

A new Atheris job is a new interpreter that imports atheris, instruments every famfs module
(atheris rewrites their bytecode in Python) and imports its target before it runs an input:
about 2.3 s of one core here (`python -X importtime`: 1.95 s under the in-process case drivers, of
which 0.56 s without instrumentation), paid by every target the default job sweeps (13 targets,
2 cores: some 15 s of the sweep). A zygote (`python -m harness.engine.atheris_main --zygote
NAMES`) pays it once for the targets `NAMES` and forks each job from there: a job runs its
first input a few milliseconds after it is asked for. A fork copies the zygote's instrumented
modules, the counters atheris reserved for them included; libFuzzer starts in the job
(`atheris.Setup`, `atheris.Fuzz`), never in the zygote.

`Zygote.spawn(argv, log, env)` returns a `Job`, which answers the part of `subprocess.Popen` a
campaign uses (`pid`, `poll`, `wait`, `send_signal`, `terminate`, `kill`, `returncode`). The
zygote is its jobs' parent, so it reaps them and reports each exit status; the jobs get SIGTERM
if the zygote dies, and the zygote ends when this process closes its stdin (or dies).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from harness.engine.errors import HarnessError
from harness.engine.procs import Signals


class Job(Signals):
    """A job forked by the zygote: the part of `subprocess.Popen` a campaign uses."""

    def __init__(self, zygote: "Zygote", pid: int):
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"job {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """One zygote process for the targets `names` (its own output in `log`); `spawn` forks a
    job from it."""

    def __init__(self, names: Sequence[str], log: Path, *, start_timeout: float = 120.0):
        from harness.engine.campaign import die_with_parent
        self.names = list(names)
        self.lock = threading.Lock()
        self.pids: list[int] = []
        self.exits: dict[int, int] = {}
        self.cond = threading.Condition()
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as err:                # atheris's lines about what it instruments
            self.proc = subprocess.Popen([sys.executable, "-m", "harness.engine.atheris_main", "--zygote",
                                          ",".join(self.names)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, preexec_fn=die_with_parent)
        self.start_timeout = start_timeout
        self.reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            parts = raw.decode(errors="replace").split()
            with self.cond:
                if len(parts) == 2 and parts[0] == "pid":
                    self.pids.append(int(parts[1]))
                elif len(parts) == 3 and parts[0] == "exit":
                    self.exits[int(parts[1])] = int(parts[2])
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def status(self, pid: int) -> int | None:
        with self.cond:
            if pid in self.exits:
                return self.exits[pid]
        if self.proc.poll() is not None and not Path(f"/proc/{pid}").exists():
            return -signal.SIGTERM             # the zygote is gone, and with it the job
        return None

    def serves(self, name: str) -> bool:
        return name in self.names and self.proc.poll() is None

    def spawn(self, argv: Sequence[str], log: Path, env: dict[str, str]) -> Job:
        """Fork a job running `atheris_main` with `argv`, its output in `log`."""
        req = json.dumps({"argv": list(argv), "log": str(log), "env": env}) + "\n"
        log.write_bytes(b"")                   # there when spawn returns, as a Popen job's log is
        with self.lock:                        # one request at a time: answers come in order
            with self.cond:
                had = len(self.pids)
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(req.encode())
                self.proc.stdin.flush()
            except OSError as e:
                raise HarnessError(f"the Atheris zygote is gone (exit {self.proc.poll()}): {e}") from e
            deadline = time.monotonic() + self.start_timeout
            with self.cond:
                while len(self.pids) == had:
                    if self.proc.poll() is not None or time.monotonic() >= deadline:
                        raise HarnessError(f"the Atheris zygote did not fork a job (exit {self.proc.poll()})")
                    self.cond.wait(0.2)
                return Job(self, self.pids[had])

    def close(self) -> None:
        """End the zygote (its jobs, still running, get SIGTERM)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
