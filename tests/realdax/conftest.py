"""The real-DAX lane's fixture: the cached kernel + initramfs, or a skip that says why qemu cannot run."""
from __future__ import annotations

import pytest

from harness.realdax.kit import Kit, RealdaxError, setup


@pytest.fixture(scope="session")
def kit() -> Kit:
    try:
        return setup()
    except RealdaxError as e:
        if e.skip_reason is None:          # set-up is possible here but broke: that is a failure
            raise
        print(f"realdax: skipped: {e.skip_reason}")
        pytest.skip(f"real-DAX lane cannot run here: {e.skip_reason} (scripts/realdax-vm setup installs it)")
