"""The command line: mkfs / replay / fsck, their JSON documents and exit codes, and no traceback
for any bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.cli import main
from tests.common.golden import golden_device_file, golden_head


def run(*args: str) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_golden_replay_json(tmp_path):
    dev = golden_device_file(tmp_path)
    rc, out, err = run("replay", str(dev), "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["superblock"]["dev_uuid"] == "66556e96-c3f3-4350-b874-ed606569d368"
    assert doc["index_table"] == [
        {"index": 0, "uuid": "66556e96-c3f3-4350-b874-ed606569d368", "size": 1 << 30},
        {"index": 1, "uuid": "abababab-abab-abab-abab-abababababab", "size": 1 << 30}]
    assert [d["path"] for d in doc["dirs"]] == ["dirA", "dirA/sub"]
    striped = {f["path"]: f for f in doc["files"]}["dirA/striped"]
    assert striped["ext_type"] == "interleave"
    assert striped["extents"][0]["nstrips"] == 4 and striped["extents"][0]["chunk_size"] == 0x200000
    assert striped["extents"][0]["strips"][2] == {"devindex": 0, "offset": 0x30000000, "length": 0x400000}
    assert doc["rejections"] == [] and doc["stopped_at"] is None


def test_mkfs_then_fsck_with_node_local_names(tmp_path):
    p, s = tmp_path / "p.img", tmp_path / "s.img"
    rc, out, _ = run("mkfs", str(p), str(s), "--size", "64M", "--json")
    assert rc == 0
    made = json.loads(out)
    assert [d["role"] for d in made["devices"]] == ["primary", "secondary"]
    rc, out, _ = run("fsck", str(p), f"{s}=dax7.0", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["devices"][1]["name"] == "dax7.0" and doc["devices"][1]["index"] == 1
    assert doc["devices"][1]["uuid"] == made["devices"][1]["uuid"]
    assert doc["fsck"]["findings"] == []
    rc, out, _ = run("mkfs", str(p), "--json")                     # refuses to clobber a famfs
    assert rc == 2 and json.loads(out)["error"]["errno"] == "EEXIST"


def test_rejections_exit_1_with_typed_entries(tmp_path):
    head = bytearray(golden_head())
    # entry 3 (dirA/f2): point its extent past the 1 GiB device, reseal
    from harness.famfs.layout import reseal
    at = 0x200000 + 48 + 544 * 3 + 144
    head[at:at + 8] = (1 << 40).to_bytes(8, "little")
    reseal(head)
    dev = tmp_path / "bad.img"
    dev.write_bytes(head)
    os.truncate(dev, 1 << 30)
    rc, out, _ = run("replay", str(dev), "--json")
    assert rc == 1
    assert json.loads(out)["rejections"] == [
        {"entry": 3, "id": "EXT-BOUNDS", "errno": "ERANGE",
         "message": "extent [0x10000000000, 0x10000600000) past the end of daxdev 0 (0x40000000)"}]


@pytest.mark.parametrize("args", [["replay"], ["fsck", "--bogus"], ["nosuchverb"]])
def test_usage_errors_exit_2(args):
    rc, _, err = run(*args)
    assert rc == 2 and "usage:" in err and "Traceback" not in err


def test_missing_and_empty_files_exit_2(tmp_path):
    (tmp_path / "empty.img").write_bytes(b"")
    for path in [tmp_path / "nope.img", tmp_path / "empty.img", tmp_path]:
        rc, out, err = run("replay", str(path), "--json")
        assert rc == 2 and "Traceback" not in err
        error = json.loads(out)["error"]
        assert error["id"] in {"SB-VALID", "IDX-RESOLVE"} and error["errno"].startswith("E"), error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=4096),
                      st.builds(lambda n, b: golden_head()[: 0x200000 + 48 + 544 * 8][:n] + b,
                                st.integers(0, 0x200000 + 48 + 544 * 8), st.binary(max_size=64))))
def test_replay_of_arbitrary_bytes_never_tracebacks(tmp_path, capsys, data):
    dev = tmp_path / "any.img"
    dev.write_bytes(data)
    rc = main(["replay", str(dev), "--json"])          # in-process: fast, same code path as the CLI
    out = capsys.readouterr().out
    assert rc in (0, 1, 2)
    doc = json.loads(out)
    assert ("error" in doc) == (rc == 2)
