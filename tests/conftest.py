"""The Hypothesis tests' example database: `.hypothesis/examples/` of the checkout, so a failure
found once is replayed first on the next run; read-only when the `CI` environment variable is set
(CI replays what developers found and writes nothing)."""
from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase

from harness.engine.hypodb import ci_read_only

_examples = DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".hypothesis" / "examples")
settings.register_profile("famfs-fuzz", database=ReadOnlyDatabase(_examples) if ci_read_only() else _examples)
settings.load_profile("famfs-fuzz")
