"""Imports go one way (STYLE.md rule 1): targets -> engine -> {gen, oracle, faults} -> famfs.

Parsed with `ast`, so the test sees every import, including ones inside functions. A package may
import itself and any lower layer, never a higher one or a sibling of its own level;
`harness/famfs` imports nothing from `harness.*` but itself. Package `__init__` files import
nothing from the harness eagerly (rule 8), and module-level imports have no cycles.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"famfs": 0, "gen": 1, "oracle": 1, "faults": 1, "engine": 2, "cli": 3, "targets": 3}


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
    assert not violations("from harness.famfs import layout\n", "harness.cases.inprocess")


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
