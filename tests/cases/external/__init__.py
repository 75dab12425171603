"""Tests of the external target; `python_program` makes a small program for it to run."""
from __future__ import annotations

import sys
from pathlib import Path


def python_program(folder: Path, name: str, source: str) -> Path:
    """An executable `folder/name` that runs `source` with this interpreter (a program for the
    external target whose argv[0] is a plain path, as a built C program's is)."""
    script = folder / f"{name}.py"
    script.write_text(source)
    wrapper = folder / name
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper
