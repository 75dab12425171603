"""Guest lifecycle: a guest that hangs is killed at its timeout, and a guest whose kernel
crashes ends qemu at once (`panic=-1`, `-no-reboot`) instead of hanging the harness."""
from __future__ import annotations

import time

from harness.realdax.kit import Guest, Kit, run_dir


def test_a_hung_guest_is_killed_on_its_timeout(kit: Kit) -> None:
    guest = Guest(kit, "hang", [], run_dir("guest-hang"), "sleep 600\n", timeout=120)
    guest.start()
    try:
        while "realdax: up" not in guest.console_path.read_text(errors="replace"):   # booted: now the
            assert time.monotonic() - guest.started < 300, "the guest did not boot"  # script hangs
            time.sleep(0.1)
        guest.timeout = time.monotonic() - guest.started + 3
        run = guest.wait()
    finally:
        guest.kill()
    assert run.timed_out and run.returncode != 0
    assert run.seconds < guest.timeout + 5


def test_a_crashed_guest_ends_qemu(kit: Kit) -> None:
    run = Guest(kit, "panic", [], run_dir("guest-panic"), "echo c > /proc/sysrq-trigger\nsleep 600\n",
                timeout=90).run()
    assert not run.timed_out, run.console[-2000:]
    assert "Kernel panic" in run.console or "sysrq: Trigger a crash" in run.console, run.console[-2000:]
