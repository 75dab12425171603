"""The closing note of a test run: the seconds to each deliberate bug of the self-test checker
with the AFL++ lane and with today's (libFuzzer / Atheris) lane, as the tests measured them in
this session (`record_property("seconds_to_bug", ...)`; works under pytest-xdist too)."""
from __future__ import annotations

import json
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for kind in ("passed", "failed"):
        for rep in terminalreporter.stats.get(kind, []):
            for name, value in getattr(rep, "user_properties", []):
                if name == "seconds_to_bug":
                    doc = json.loads(value)
                    rows[doc["lane"]] = doc
    if not rows:
        return
    bugs = sorted({b for doc in rows.values() for b in doc["bugs"]} | {b for doc in rows.values() for b in doc["all"]})
    tr = terminalreporter
    tr.write_sep("-", "external self-test: seconds to each deliberate bug (this session)")
    lanes = sorted(rows)
    tr.write_line(f"{'bug':28}" + "".join(f"{lane:>34}" for lane in lanes))
    for b in bugs:
        cells = []
        for lane in lanes:
            s = rows[lane]["bugs"].get(b)
            cells.append(f"{s:.1f}" if s is not None else f"not in {rows[lane]['budget']:.0f} s")
        tr.write_line(f"{b:28}" + "".join(f"{c:>34}" for c in cells))
    for lane in lanes:
        tr.write_line(f"  {lane}: {rows[lane]['note']}")
