"""Where the project's tree is: the one place that finds it, so no module counts its own depth.

`root()` is the directory that holds the `harness` package (in a checkout: the one with
`pyproject.toml`, `corpora/`, `tests/`), found from this file's place in the package, so a module
may move to any depth without breaking a path. Imports nothing from the harness: any layer may
use it.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent            # .../harness


def root() -> Path:
    """The project's root directory (the parent of the `harness` package)."""
    return PACKAGE.parent
