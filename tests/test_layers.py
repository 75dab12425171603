"""Imports go one way: every arrow points down the ranks below (docs/architecture.md).

    cli, targets                 6   the command line; one module per target
    ops                          5   users of campaigns: default job, nightly, report, bench, ...
    realdax                      4   the qemu lane (kit, agent, lanes, fuzz lane)
    cases                        3   what one input does (in process, session, mount, external)
    tools                        2   famfs tools on files (mkfs/replay/fsck/mount verbs, device
                                     arguments, the probe log)
    gen, oracle, faults          1   inputs, the independent oracle, fault injection
    famfs, engine                0   the system under test; the generic fuzzing machinery. Side by
                                     side: neither imports the other, nor anything above
    project                     -1   where the tree is (imports nothing from the harness)

Parsed with `ast`, so the test sees every import, including ones inside functions. A package may
import itself and any lower layer, never a higher one or a sibling of its own level;
`harness/famfs` imports nothing from `harness.*` but itself, and `harness/engine` nothing but
itself and `harness.project` (it is told what it must know of famfs by `targets.SYSTEM`, read
through the registry). The famfs side (gen, oracle, faults) never imports the engine. Targets
import the case drivers (`harness.cases`), `harness.engine.registry`, and for the shape of their
inputs `harness.gen` (seeds, mutators, decoders) and the coverage signals `harness.faults.statecov`
(the race targets') and `harness.faults.shmcov` (shm_states'), imported so Atheris instruments
them; nothing else of the harness. Package
`__init__` files import nothing from the harness eagerly, and module-level imports have no cycles.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"project": -1, "famfs": 0, "engine": 0, "gen": 1, "oracle": 1, "faults": 1, "tools": 2, "cases": 3,
        "realdax": 4, "ops": 5, "cli": 6, "targets": 6}
FAMFS_SIDE = ("famfs", "gen", "oracle", "faults")
TARGETS_MAY_IMPORT = ("harness.cases", "harness.engine.registry", "harness.gen", "harness.faults.statecov",
                      "harness.faults.shmcov")


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "targets":
        return "targets"
    if parts[0] == "harness" and len(parts) > 1:
        return parts[1] if parts[1] in RANK else None
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(source: str, module: str, *, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level] if node.level else []
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append(name)
            out += [f"{name}.{a.name}" for a in node.names]
    return out


def violations(source: str, module: str) -> list[str]:
    """Upward or sideways imports in `source` (the code of `module`)."""
    mine = layer(module)
    if mine is None:
        return []
    bad = []
    for name in imports(source, module):
        theirs = layer(name)
        if theirs is None or theirs == mine:
            continue
        if RANK[theirs] >= RANK[mine]:
            bad.append(f"{module} imports {name} ({mine} -> {theirs})")
    return sorted(set(bad))


def sources() -> list[tuple[str, Path]]:
    files = list((ROOT / "harness").rglob("*.py")) + list((ROOT / "targets").rglob("*.py"))
    return [(module_name(p), p) for p in files if "__pycache__" not in p.parts]


def test_imports_only_go_down():
    found = [v for m, p in sources() for v in violations(p.read_text(), m)]
    assert not found, "\n".join(found)


def test_the_checker_catches_an_upward_import():
    assert violations("from harness.engine.registry import load\n", "harness.famfs.replay")
    assert violations("import harness.oracle.model\n", "harness.gen.spec")           # sideways
    assert violations("from ..engine import campaign\n", "harness.famfs.kernel")      # relative
    assert not violations("from harness.famfs import layout\n", "harness.cases.node")


def harness_imports(module: str, path: Path | None = None, source: str = "") -> list[str]:
    """The harness modules `module` imports: for `from P import x`, `P.x` stands for both (P only
    when nothing more specific is named)."""
    text = source or (path.read_text() if path else "")
    names = {n for n in imports(text, module) if n.split(".")[0] in ("harness", "targets")}
    return sorted(n for n in names if not any(o.startswith(n + ".") for o in names))


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_every_harness_package_has_a_rank():
    packages = {p.name for p in (ROOT / "harness").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in (ROOT / "harness").glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(RANK), sorted((packages | modules) - set(RANK))


def test_the_engine_imports_nothing_famfs_specific():
    found = [f"{m} imports {n}" for m, p in sources() if layer(m) == "engine"
             for n in harness_imports(m, p) if not under(n, ("harness.engine", "harness.project"))]
    assert not found, "\n".join(found)
    assert [m for m, _ in sources() if m.startswith("harness.engine.")], "no engine modules found"


def test_the_famfs_side_never_imports_the_engine():
    found = [f"{m} imports {n}" for m, p in sources() if layer(m) in FAMFS_SIDE
             for n in harness_imports(m, p) if layer(n) == "engine"]
    assert not found, "\n".join(found)


def test_targets_import_only_cases_the_registry_and_input_generation():
    found = [f"{m} imports {n}" for m, p in sources() if layer(m) == "targets"
             for n in harness_imports(m, p) if not under(n, TARGETS_MAY_IMPORT + ("targets",))]
    assert not found, "\n".join(found)


def test_no_realdax_module_outside_the_realdax_package():
    stray = [m for m, _ in sources() if "realdax" in m.split(".")[-1] and layer(m) != "realdax"]
    assert not stray, stray


def test_the_extra_checks_catch_what_they_name():
    engine = [n for n in harness_imports("harness.engine.runner", source="from harness.famfs import layout\n"
                                         "import harness.oracle.model\nfrom harness import project\n")
              if not under(n, ("harness.engine", "harness.project"))]
    assert engine == ["harness.famfs.layout", "harness.oracle.model"]
    assert not under("harness.oracle.case", TARGETS_MAY_IMPORT)
    assert not under("harness.engine.campaign", TARGETS_MAY_IMPORT)
    assert under("harness.cases.mount", TARGETS_MAY_IMPORT)
    assert violations("from harness.engine.registry import load\n", "harness.gen.spec") == []  # rank allows it:
    assert layer("harness.gen.spec") in FAMFS_SIDE      # ... so the famfs-side test above holds it


def test_package_inits_import_nothing_from_the_harness():
    for module, path in sources():
        if path.name == "__init__.py":
            names = imports(path.read_text(), module)
            assert not [n for n in names if n.startswith(("harness", "targets"))], module


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    known = {m for m, _ in sources()}
    for module, path in sources():
        deps = {n for n in imports(path.read_text(), module, top_level_only=True)}
        graph[module] = {d for d in deps if d in known and d != module}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
