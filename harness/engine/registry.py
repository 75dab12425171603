"""The target registry: a fuzz target is a module `targets/<name>.py` that defines `TARGET`.

Like syzkaller's RegisterTarget: a name is registered once (a second module claiming it is an
error), and asking for an unknown name lists the ones that exist.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from harness.engine.crashstore import HarnessError


@dataclass(frozen=True)
class Target:
    """One fuzz target.

    one_input  takes the input bytes, runs one case, returns the number of index lookups it
               checked (or None); a finding is raised (InvariantViolation or any crash).
    seeds      yields meaningful starting inputs (written to corpora/<name>/ by `corpus seed`).
    mutator    optional Atheris custom mutator (data, max_size, seed) -> bytes.
    strategy   optional Hypothesis strategy of input bytes (default: st.binary()).
    uses_fuse  a case needs a real FUSE mount (root, /dev/fuse).
    lookups    a case performs daxdev index lookups: every run must report some (a test holds it).
    flat_why   why the target's coverage may not grow past its corpus, when that is known and
               not a fault of the harness; a flat run of any other target is a harness problem.
    needs_command  a case runs a program the user names (`--cmd`, FAMFS_FUZZ_EXTERNAL_CMD): the
               default job cannot run it unconfigured (external).
    timeout_s  seconds one case may take before it is a hang (2 s gave false timeouts on a loaded
               2-core machine: 24-device specs at 6-16 cases/s); libFuzzer's -timeout is 5x that.
    """

    name: str
    one_input: Callable[[bytes], int | None]
    seeds: Callable[[], Iterable[bytes]] = lambda: ()
    timeout_s: float = 5.0
    mutator: Callable[[bytes, int, int], bytes] | None = None
    strategy: Any = None
    max_len: int = 1 << 16
    uses_fuse: bool = False
    lookups: bool = False
    flat_why: str = ""
    needs_command: bool = False


def names() -> list[str]:
    """Every target module name under `targets/` (found by location: the registry loads targets
    by name, it never imports the package statically)."""
    spec = importlib.util.find_spec("targets")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("the targets package is not importable (is the project installed?)")
    return sorted(m.name for m in pkgutil.iter_modules(list(spec.submodule_search_locations))
                  if not m.name.startswith("_"))


def load(name: str) -> Target:
    """The TARGET of targets/<name>.py, or a HarnessError naming the known targets."""
    known = names()
    if name not in known:
        raise HarnessError(f"unknown target {name!r}; known targets: {', '.join(known)}")
    module = importlib.import_module(f"targets.{name}")
    target = getattr(module, "TARGET", None)
    if not isinstance(target, Target):
        raise HarnessError(f"targets/{name}.py defines no TARGET")
    if target.name != name:
        raise HarnessError(f"targets/{name}.py registers the name {target.name!r}")
    return target


def all_targets() -> list[Target]:
    return [load(n) for n in names()]


def default_names() -> list[str]:
    """Targets that run with no configuration (not `external`, which needs a command)."""
    return [n for n in names() if not load(n).needs_command]
