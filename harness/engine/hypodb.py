"""The Hypothesis engine's example database: where what Hypothesis found (and shrank) is kept, so a
later run or another worker replays it first.

`open_database(spec, target, run_dir)`:

- no spec: a directory under the run folder, `<run_dir>/hypothesis/` (one run folder per target);
- `redis://HOST:PORT/N`: Hypothesis's Redis database (workers on several machines share it), keys
  prefixed `famfs-fuzz:<target>:`, behind `BackgroundWriteDatabase` so a save never waits for the
  network (`flush` waits for the queued writes at the end of a campaign);
- `none`: no database (the old behaviour: nothing kept, nothing replayed);
- any other value: a directory, `<spec>/<target>/`.

Read-only (`ReadOnlyDatabase`: examples are replayed, nothing is saved or deleted) when asked, or
when the `CI` environment variable is set to anything but ""/"0"/"false": a CI run replays what
the fuzzing workers found but never writes to their database.

Hypothesis keys examples by the test function's source (the campaign's `@given` function) and its
arguments, so an edit of that function starts a fresh key; the durable regression corpus stays
`corpora/<target>/regress/`.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from harness.engine.errors import HarnessError


class DatabaseError(HarnessError):
    """An example database that cannot be used: a typed error (errno, invariant ID, message)."""

    invariant = "HYP-DB"

    def __init__(self, err: int, message: str):
        super().__init__(f"[{self.invariant}] {os.strerror(err)}: {message}")
        self.errno = err


def ci_read_only() -> bool:
    """Is this a CI run (the `CI` environment variable set, as GitHub Actions and our .ci/run do)?"""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def open_database(spec: str | None, target: str, run_dir: Path, *, read_only: bool | None = None) -> Any:
    """The example database for `target`'s Hypothesis campaign (see the module docstring), or None."""
    from hypothesis.database import BackgroundWriteDatabase, DirectoryBasedExampleDatabase, ReadOnlyDatabase
    read_only = ci_read_only() if read_only is None else read_only
    db: Any
    if spec is not None and spec.lower() == "none":
        return None
    if spec is not None and spec.startswith("redis://"):
        db = BackgroundWriteDatabase(_redis(spec, target))
    else:
        where = Path(run_dir) / "hypothesis" if spec is None else Path(spec) / target
        if not read_only:
            try:
                where.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DatabaseError(e.errno or errno.EIO, f"example database directory {where}: {e.strerror}") from None
        db = DirectoryBasedExampleDatabase(where)
    return ReadOnlyDatabase(db) if read_only else db


def _redis(url: str, target: str) -> Any:
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseError(errno.ENOPKG, f"--hypothesis-db {url} needs the redis client: "
                                          "pip install 'famfs-fuzz[redis]'") from None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        client.ping()
    except ValueError as e:
        raise DatabaseError(errno.EINVAL, f"--hypothesis-db {url}: {e}") from None
    except redis.exceptions.RedisError as e:
        raise DatabaseError(errno.ECONNREFUSED, f"--hypothesis-db {url}: no Redis server answers ({e})") from None
    return RedisExampleDatabase(client, key_prefix=f"famfs-fuzz:{target}:".encode())


def flush(db: Any) -> None:
    """Wait until every write queued by a background-writing database has landed (its `fetch`
    waits for them; a read-only wrapper has nothing queued)."""
    if db is not None and type(db).__name__ == "BackgroundWriteDatabase":
        list(db.fetch(b"famfs-fuzz:flush"))
