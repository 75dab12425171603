"""Every target: a short Atheris run with zero findings on main, lookups checked where the target
performs them; the regression corpus replays clean; the daemon session as a state machine."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from harness.engine.campaign import fuzz
from harness.engine.crashers import regress
from harness.engine.errors import HarnessError
from harness.engine.registry import load, names
from harness.cases.session import SessionMachine
from tests.common.fuse import REASON as FUSE_REASON

SECONDS = 8
CHECKER = Path(__file__).with_name("superblock_checker.py")


def test_registry_lists_every_target_module():
    """Every targets/<name>.py on disk is a registered target of that name, and nothing else is."""
    from pathlib import Path

    import targets
    on_disk = {p.stem for p in Path(targets.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert set(names()) == on_disk
    assert all(load(n).name == n for n in on_disk)
    with pytest.raises(HarnessError) as e:
        load("no_such_target")
    assert "known targets" in str(e.value) and "log_replay" in str(e.value)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch):
    """Give a target that runs a program the user names (external) a correct one: the small
    Python checker next to this file. Other targets need nothing."""
    def configure(name: str) -> None:
        if load(name).needs_command:
            monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_CMD", f"{sys.executable} {CHECKER} {{image}}")
            monkeypatch.setenv("FAMFS_FUZZ_EXTERNAL_BATCH", "0")
            monkeypatch.delenv("FAMFS_FUZZ_DIFFERENTIAL", raising=False)
    return configure


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_short_atheris_run_finds_nothing_on_main(tmp_path, name, configured):
    configured(name)
    if load(name).uses_fuse and FUSE_REASON:
        pytest.skip(f"needs FUSE: {FUSE_REASON}")
    r = fuzz(name, engine="atheris", max_time=SECONDS, crashers=tmp_path / "crashers", workdir=tmp_path / "runs",
             seed=1)
    print(f"\n{name}: {r.execs} execs in {r.seconds:.1f} s = {r.execs_per_s:,.0f}/s, {r.lookups} lookups checked")
    assert r.findings == 0, r.signatures
    assert r.execs > 0
    if load(name).lookups:
        assert r.lookups > 0


@pytest.mark.parametrize("name", ["log_replay", "daemon_session"])
def test_short_hypothesis_run_finds_nothing_on_main(tmp_path, name):
    r = fuzz(name, engine="hypothesis", max_time=4, crashers=tmp_path / "crashers")
    assert r.findings == 0, r.signatures
    assert r.execs > 0


@pytest.mark.parametrize("name", names())
def test_regression_corpus_replays_clean(name, configured):
    configured(name)
    if load(name).uses_fuse and FUSE_REASON:
        pytest.skip(f"needs FUSE: {FUSE_REASON}")
    r = regress([name], all_inputs=True)
    assert not r.failures, r.failures
    assert r.inputs[name] > 0


def test_daemon_session_state_machine():
    run_state_machine_as_test(SessionMachine, settings=settings(max_examples=15, stateful_step_count=12,
                                                                deadline=None,
                                                                suppress_health_check=list(HealthCheck)))
