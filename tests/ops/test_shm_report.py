"""shm_states' numbers reach bench and the nightly report: states per operation, pruned, run."""
from __future__ import annotations

from harness.ops import bench, report
from harness.cases import shm as shmcase
from harness.gen import seeds


def test_corpus_states_count_every_operation_and_the_report_tables_them(tmp_path):
    corpus = tmp_path / "shm_states"
    corpus.mkdir()
    for k, data in enumerate([*seeds.shm_workloads(), bytes([1, 2, 1, 0, 0, 3, 1, 0, 0])]):
        (corpus / f"in{k}").write_bytes(data)
    doc = shmcase.corpus_states(tmp_path)
    ops = doc["ops"]
    assert doc["cases"] == 4 and doc["findings"] == 0
    assert {"mkfs", "mkdir", "file", "add_daxdev", "remkfs"} <= set(ops)
    for v in ops.values():
        assert 2 ** (v["stores"] // v["ops"]) >= v["distinct"] // v["ops"] and v["run"] > 0
    assert ops["mkfs"]["silent"] > ops["mkfs"]["stores"] // 2      # mkfs of zeroed memory: mostly silent
    html = report.render({"targets": [], "execs": 0, "lookups_checked": 0, "new_findings": 0, "crashers": [],
                          "shm_states": doc})
    assert 'id="shm-states"' in html and "remkfs" in html and f"{ops['mkfs']['distinct']:,}" in html


def test_bench_reports_states_per_second(monkeypatch, tmp_path):
    doc = bench.shm_states_rate(seconds=0.5)
    assert doc["states_run"] > 0 and doc["states_per_s"] > 0 and doc["findings"] == 0
    lines = bench.shm_lines(doc)
    assert "states/s" in lines[0] and any(line.split()[0] == "mkfs" for line in lines[2:])
