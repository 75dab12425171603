"""The harness's own exceptions: none of them is ever a finding of the system under test.

* `HarnessError`: a bug or misuse of the harness itself (bad arguments, a missing folder). The
  case runner re-raises it, so it never lands in the crash store.
* `CaseTimeout`: raised inside a case that ran past its target's timeout; the runner turns it into
  a `timeout` or `harness-hang` finding, depending on where the case was stuck.
* `CampaignStop`: ends a Hypothesis campaign at its time or run budget (not a test failure).
"""
from __future__ import annotations

import traceback


class HarnessError(Exception):
    """A bug or misuse of the harness itself (bad arguments, a missing folder), never a famfs crasher."""


class CaseTimeout(BaseException):
    """Raised inside a case that ran past its target's timeout (a BaseException, so no `except
    Exception` in the code under test can swallow it). `stack` is where the case was when the time
    ran out, innermost frame last (as libFuzzer's -timeout prints the stack of a slow unit)."""

    def __init__(self, stack: list[traceback.FrameSummary] | None = None):
        super().__init__("case timed out")
        self.stack = stack or []


class CampaignStop(BaseException):
    """Ends a Hypothesis campaign at its time or run budget (not a test failure)."""
