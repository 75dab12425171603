"""Test helpers for real FUSE mounts: the `needs_fuse` marker and a mount run as a subprocess."""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def fuse_unavailable_reason() -> str | None:
    """Why a FUSE mount cannot work here, or None if it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist on this machine"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"/dev/fuse cannot be opened read-write: {e.strerror}"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as e:
        return f"pyfuse3 does not import: {e}"
    return None


REASON = fuse_unavailable_reason()
needs_fuse = pytest.mark.skipif(REASON is not None, reason=f"needs FUSE: {REASON}")


class MountProcess:
    """`famfs-fuzz mount` in a child process: the daemon's death is the child's, not ours."""

    def __init__(self, devices: list[str], mountpoint: Path, *, node: str = "node0", abi: str = "pull-devt",
                 probe_log: Path | None = None, extra: list[str] | None = None):
        self.mountpoint = mountpoint
        self.probe_log = probe_log
        cmd = [sys.executable, "-m", "harness.cli", "mount", *devices, str(mountpoint), "--node", node,
               "--abi", abi, *(["--probe-log", str(probe_log)] if probe_log else []), *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.wait_mounted()

    def wait_mounted(self, timeout: float = 20.0) -> None:
        """Wait for the daemon's "mounted on" line (not for ismount: a stale mount is one too)."""
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        if "mounted on" not in line:
            self.kill()
            raise RuntimeError(f"mount did not come up: {line}{out.read() if self.proc.poll() is not None else ''}")

    def logplay(self, timeout: float = 20.0) -> str:
        """SIGHUP the daemon (a client's logplay) and wait for its "logplay:" line."""
        self.proc.send_signal(signal.SIGHUP)
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        assert "logplay:" in line, line
        return line

    def unmount(self, timeout: float = 20.0) -> str:
        """Unmount cleanly; returns what the daemon printed. Fails on a non-zero exit."""
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=False, capture_output=True)
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False, capture_output=True)
