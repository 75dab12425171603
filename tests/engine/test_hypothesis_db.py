"""The Hypothesis engine's example database: a failure Hypothesis found is shrunk, kept in the
crash store (`minimized`) and in the database, and a worker that starts later, sharing the
database (a real Redis server here), replays it before anything else.

The plant (replay raises on a log with 25 or more entries) runs in a copy of famfs with an empty
corpus, so only Hypothesis's search can reach it (`log_structured` reads its bytes as a spec): the
first process needs many executions for it, the asserted bound is what search must pay.
Redis is Debian's `redis-server` started by the fixture on 127.0.0.1 on a free port, in a temp
directory, not daemonized, persistence off; `./scripts/test` installs it. Where it cannot start,
the tests skip with the reason, except under CI (`CI` set), where that is a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.engine.hypodb import DatabaseError, open_database

ROOT = Path(__file__).resolve().parents[2]
TARGET = "log_structured"
PLANT = ('        raise LogHeaderRejected.bad(f"next_seqnum {h.next_seqnum} != next_index {h.next_index}")\n'
         '    return h\n')
PLANTED = PLANT.replace("    return h\n", "    if h.next_index >= 25:\n"
                                         "        raise RuntimeError('planted: 25 entries')\n    return h\n")


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"redis-server must run on CI (scripts/test installs it): {why}")
    pytest.skip(f"redis-server unavailable: {why}")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        _unavailable("not installed (apt-get install redis-server; ./scripts/test does)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("redis")
    log = open(data / "redis.log", "wb")
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--dir", str(data)], stdout=log, stderr=subprocess.STDOUT)
    try:
        import redis
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    out = (data / "redis.log").read_text(errors="replace")[-800:]
                    _unavailable(f"did not answer on 127.0.0.1:{port} (exit {proc.returncode}): {out}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("hypodb") / "buggy"
    for part in ("harness", "targets"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "corpora" / TARGET).mkdir(parents=True)            # no seeds: only search reaches the plant
    replay = copy / "harness" / "famfs" / "replay.py"
    text = replay.read_text()
    assert text.count(PLANT) == 1
    replay.write_text(text.replace(PLANT, PLANTED))
    return copy


def _campaign(copy: Path, crashers: Path, *db: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CI"}      # fuzzing workers, not CI: they write
    env["PYTHONPATH"] = str(copy)
    run = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", TARGET, "--engine", "hypothesis",
                          "--max-time", "60", "--stop-on-crash", "--crashers", str(crashers), "--json", *db],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    doc = json.loads(run.stdout)
    assert len(doc["signatures"]) == 1, doc["signatures"]
    return doc


def _redis_examples(url: str) -> dict[bytes, set[bytes]]:
    import redis
    client = redis.Redis.from_url(url)
    return {k: set(client.smembers(k)) for k in client.keys(f"famfs-fuzz:{TARGET}:*".encode())}


@pytest.fixture(scope="module")
def first_worker(planted, redis_url, tmp_path_factory) -> tuple[dict, Path]:
    """One campaign on the planted copy, sharing the Redis database: it must search for the plant."""
    crashers = tmp_path_factory.mktemp("worker-a") / "crashers"
    return _campaign(planted, crashers, "--hypothesis-db", redis_url), crashers


@pytest.mark.slow
def test_a_second_worker_replays_the_first_workers_failure_first(planted, tmp_path, redis_url, first_worker):
    first, _ = first_worker
    (key,) = first["signatures"]
    assert "RuntimeError in harness/famfs/replay.py:check_header" in first["signatures"][key]
    searched = first["found_at"][key]
    assert searched >= 10, f"the plant was found at execution {searched}: that measures no search"

    second = _campaign(planted, tmp_path / "crashers-b", "--hypothesis-db", redis_url)
    assert list(second["found_at"]) == [key]
    assert second["found_at"][key] <= 2 < searched, (second["found_at"], searched)
    print(f"\nfirst worker: found at execution {searched}; second worker: at {second['found_at'][key]}")

    before = _redis_examples(redis_url)                           # a read-only (CI) replay writes nothing
    third = _campaign(planted, tmp_path / "crashers-c", "--hypothesis-db", redis_url,
                      "--hypothesis-db-access", "read-only")
    assert third["found_at"][key] <= 2
    assert _redis_examples(redis_url) == before


@pytest.mark.slow
def test_a_hypothesis_found_failure_is_shrunk_and_stored(redis_url, first_worker):
    from hypothesis.database import choices_from_bytes
    doc, crashers = first_worker
    (key,) = doc["signatures"]
    folder = crashers / TARGET / key
    original, shrunk = (folder / "input").read_bytes(), (folder / "minimized").read_bytes()
    assert (len(shrunk), shrunk) < (len(original), original), (original, shrunk)     # shortlex: simpler
    assert doc["shrunk"] == {key: len(shrunk)}
    stored = _redis_examples(redis_url)
    assert stored and all(k.startswith(f"famfs-fuzz:{TARGET}:".encode()) for k in stored)
    examples = [choices_from_bytes(v) for values in stored.values() for v in values]
    assert (shrunk,) in examples, f"the shrunk input is not in the database: {examples}"
    print(f"\nfirst failing input {len(original)} bytes, shrunk by Hypothesis to {len(shrunk)} bytes")


def test_open_database_default_directory_read_only_and_a_typed_error(tmp_path):
    with socket.socket() as s:                                     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatabaseError, match=r"\[HYP-DB\].*no Redis server answers") as e:
        open_database(f"redis://127.0.0.1:{port}/0", TARGET, tmp_path)
    assert e.value.errno
    assert open_database("none", TARGET, tmp_path) is None
    assert type(open_database(None, TARGET, tmp_path, read_only=True)).__name__ == "ReadOnlyDatabase"
    assert not (tmp_path / "hypothesis").exists()                       # read-only: nothing created
    default = open_database(None, TARGET, tmp_path, read_only=False)     # under the run folder
    assert type(default).__name__ == "DirectoryBasedExampleDatabase" and (tmp_path / "hypothesis").is_dir()
    shared = open_database(str(tmp_path / "shared"), TARGET, tmp_path, read_only=False)
    assert Path(shared.path) == tmp_path / "shared" / TARGET
