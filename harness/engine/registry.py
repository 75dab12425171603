"""The target registry: a fuzz target is a module `targets/<name>.py` that defines `TARGET`.

Like syzkaller's RegisterTarget: a name is registered once (a second module claiming it is an
error), and asking for an unknown name lists the ones that exist.

The registry is also where the layer above tells the generic engine what it needs to know of the
system under test, which the engine never imports: the `targets` package's `SYSTEM` table (read by
`system()`, without importing any target) names the package under test (Atheris instruments it, its
frames name a crash), the modules instrumented besides it, and which exception types are which kind
of finding. A case module that holds resources across inputs registers their release with
`at_exit`; an engine that ends its process calls `run_exit_hooks`.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from harness.engine.errors import HarnessError


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
    value_profile  run libFuzzer with -use_value_profile=1: the operands of the instrumented
               comparisons become features, a gradient toward the limits a check compares with.
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
    value_profile: bool = False
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


@dataclass(frozen=True)
class System:
    """What the engine knows of the system under test, as the `targets` package declares it.

    package            dotted name of the package under test ("" for none): Atheris instruments
                       it, and only its frames name a crash (`signature`).
    also_instrumented  harness modules instrumented besides it (a race target's interleaving
                       signal, whose branches are the coverage).
    finding_kinds      exception type name -> signature kind, for findings that are not a plain
                       exception: "invariant" (carries `.invariant` and `.where`), "internal-error"
                       (carries `.error` with type, where and traceback text), "daemon-death".
    """

    package: str = ""
    also_instrumented: tuple[str, ...] = ()
    finding_kinds: Mapping[str, str] = field(default_factory=dict)

    @property
    def frames_prefix(self) -> str:
        """The package's path inside the repository, '/'-separated with a trailing '/'."""
        return self.package.replace(".", "/") + "/" if self.package else ""

    def covers(self, module: str) -> bool:
        """Whether `module` is (inside) the package under test."""
        return bool(self.package) and (module == self.package or module.startswith(self.package + "."))


_SYSTEM: list[System] = []


def system() -> System:
    """The `SYSTEM` table of the `targets` package (importing only the package itself, whose
    `__init__` imports nothing), read once; an empty `System` if it declares none."""
    if not _SYSTEM:
        try:
            table = getattr(importlib.import_module("targets"), "SYSTEM", None) or {}
        except ImportError:
            table = {}
        _SYSTEM.append(System(package=table.get("package", ""),
                              also_instrumented=tuple(table.get("also_instrumented", ())),
                              finding_kinds=dict(table.get("finding_kinds", {}))))
    return _SYSTEM[0]


_EXIT_HOOKS: list[Callable[[], None]] = []


def at_exit(hook: Callable[[], None]) -> None:
    """Have `hook` run when an engine ends its process (`run_exit_hooks`); registered once."""
    if hook not in _EXIT_HOOKS:
        _EXIT_HOOKS.append(hook)


def run_exit_hooks() -> None:
    for hook in list(_EXIT_HOOKS):
        hook()
