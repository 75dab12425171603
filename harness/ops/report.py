"""Run reports: summary.json (everything), junit.xml (for CI) and a self-contained report.html.

The HTML needs no network and no script: plots are inline SVG drawn here from the run's one-a-
second samples (exec/s and coverage over time per target, signatures over time, lookups checked;
a target's shares on one line, on the job's clock), then the targets whose coverage never grew
past their corpus (harness problems), the schedule (which target ran when, on which slot), the
crash table (signature, status, reproduction rate, repro command), the coverage of harness/famfs
per file, and the run's settings. `render(summary)` works from summary.json alone,
so `famfs-fuzz report RUN_DIR` can redraw an old run.
"""
from __future__ import annotations

import html
import itertools
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]


COUNTERS = ("lookups_ok", "lookups_justified", "lookups_unjustified", "internal_errors")


def summary_of(result: Any) -> dict[str, Any]:
    """The JSON document of a `nightly.NightlyResult`."""
    shares = {id(s.result): s for s in getattr(result, "shares", [])}

    def entry(r: Any, rnd: int) -> dict[str, Any]:
        s = shares.get(id(r))
        return {**r.as_dict(), "round": rnd, **({"slot": s.slot, "start": round(s.start, 2)} if s else {})}
    internal: dict[str, str] = {}
    for r in result.results:
        internal.update(getattr(r, "internal_signatures", {}) or {})
    return {"out": result.out, "budget_s": result.budget, "jobs": result.jobs, "started": result.started,
            "seconds": round(result.seconds, 1),
            "targets": [entry(r, k + 1) for k, rnd in enumerate(result.rounds) for r in rnd],
            "new_findings": result.new_findings, "crashers": result.crashers, "merges": result.merges,
            "coverage": result.coverage, "skipped": list(getattr(result, "skipped", [])),
            "lookups_checked": sum(r.lookups for r in result.results),
            "execs": sum(r.execs for r in result.results),
            **{k: sum(getattr(r, "counters", {}).get(k, 0) for r in result.results) for k in COUNTERS},
            "internal_signatures": internal,
            "coverage_flat": list(getattr(result, "flat", [])),
            "shm_states": dict(getattr(result, "shm_states", {}) or {}),
            "interrupted": any(getattr(r, "interrupted", False) for r in result.results),
            "schedule": [s.as_dict() for s in getattr(result, "shares", [])]}


def _atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write(out: Path, summary: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.json", out / "junit.xml", out / "report.html"]
    _atomic(paths[0], json.dumps(summary, indent=2))
    _atomic(paths[1], junit(summary))
    _atomic(paths[2], render(summary))
    return paths


def junit(summary: dict[str, Any]) -> str:
    suite = ET.Element("testsuite", name="famfs-fuzz nightly")
    cases = 0
    failures = 0
    for t in summary["targets"]:
        case = ET.SubElement(suite, "testcase", classname="fuzz", name=t["target"], time=str(t["seconds"]))
        cases += 1
        if t["new_signatures"]:
            failures += 1
            ET.SubElement(case, "failure", message=f"{len(t['new_signatures'])} new signatures").text = \
                "\n".join(t["new_signatures"].values())
    for f in summary.get("coverage_flat") or []:
        case = ET.SubElement(suite, "testcase", classname="harness.coverage", name=f["target"])
        cases += 1
        ET.SubElement(case, "skipped", message=f"coverage never grew past the corpus (cov {f.get('cov_start')} "
                      f"ft {f.get('ft_start')}): a harness problem")
    for c in summary["crashers"]:
        case = ET.SubElement(suite, "testcase", classname=f"crasher.{c['target']}", name=c["key"])
        cases += 1
        if c["status"] != "fixed":
            failures += 1
            ET.SubElement(case, "failure", message=c["title"]).text = c["repro"]
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    return ET.tostring(suite, encoding="unicode")


def _chart(title: str, series: dict[str, list[tuple[float, float]]], ylabel: str) -> str:
    w, h, pad = 640, 240, 44
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    xmax = max(x for x, _ in pts) or 1
    ymax = max(y for _, y in pts) or 1
    def sx(x: float) -> float:
        return pad + (w - 2 * pad) * x / xmax
    def sy(y: float) -> float:
        return h - pad - (h - 2 * pad) * y / ymax
    out = [f'<h3>{html.escape(title)}</h3><svg class="chart" width="{w}" height="{h + 18 * ((len(series) + 2) // 3)}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}">',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
           f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="11">seconds (0-{xmax:.0f})</text>',
           f'<text x="4" y="{pad - 8}" font-size="11">{html.escape(ylabel)} (max {ymax:,.0f})</text>']
    for k, (name, s) in enumerate(sorted(series.items())):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        out.append(f'<polyline class="series" data-target="{html.escape(name)}" fill="none" stroke="{color}" '
                   f'stroke-width="1.5" points="{path}"/>')
        lx, ly = pad + (k % 3) * 200, h + 14 + 18 * (k // 3)
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{ly}" font-size="11">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _cov_cell(t: dict[str, Any]) -> str:
    if t.get("ft_start") is None:
        return "n/a"
    flag = "" if t.get("coverage_grew") else " (flat)"
    return f"{t.get('cov_start')}/{t.get('ft_start')} &rarr; {t.get('cov_end')}/{t.get('ft_end')}{flag}"


def render(summary: dict[str, Any]) -> str:
    targets = summary["targets"]
    rate: dict[str, list[Any]] = {}
    cov: dict[str, list[Any]] = {}
    sigs: dict[str, list[Any]] = {}
    looks: dict[str, list[Any]] = {}
    for t in targets:
        s = t.get("series") or []
        if "start" in t:                     # a share of a scheduled run: on the job's clock, one line a target
            key, off = t["target"], t["start"]
        else:
            key, off = t["target"] + (f" (round {t['round']})" if t.get("round", 1) > 1 else ""), 0.0
        base = looks[key][-1][1] if looks.get(key) else 0
        rate.setdefault(key, []).extend(
            (off + b["t"], (b["execs"] - a["execs"]) / max(b["t"] - a["t"], 1e-9)) for a, b in itertools.pairwise(s))
        cov.setdefault(key, []).extend((off + p["t"], p["cov"]) for p in s)
        sigs.setdefault(key, []).extend((off + p["t"], p["signatures"]) for p in s)
        looks.setdefault(key, []).extend((off + p["t"], base + p["lookups"]) for p in s)
    for d in (rate, cov, sigs, looks):
        for k in d:
            d[k].sort()
    rows = "".join(
        f"<tr><td>{html.escape(t['target'])}</td><td>{t.get('round', 1)}</td><td>{t['execs']:,}</td>"
        f"<td>{t['execs_per_s']:,.0f}</td>"
        f"<td>{t['lookups_checked']:,}</td><td>{t.get('lookups_unjustified', 0):,}</td>"
        f"<td>{t.get('internal_errors', 0):,}</td>"
        f"<td>{t['findings']}</td><td>{len(t['new_signatures'])}</td>"
        f"<td>{_cov_cell(t)}</td></tr>"
        for t in targets)
    flat_html = _table("coverage-flat", "Coverage that never grew past the corpus",
                       ["target", "cov / ft after the corpus", "cov / ft at the end", "execs", "kind", "why"],
                       [[f["target"], f"{f.get('cov_start')} / {f.get('ft_start')}",
                         f"{f.get('cov_end')} / {f.get('ft_end')}",
                         f"{f.get('execs', 0):,}", "known limit" if f.get("known") else "harness problem",
                         str(f.get("reason", ""))] for f in summary.get("coverage_flat") or []])
    sched_html = _table("schedule", "Schedule",
                        ["target", "phase", "slot", "start s", "seconds", "execs", "ft", "new corpus files",
                         "new signatures"],
                        [[s["target"], s["phase"], str(s["slot"]), f"{s['start']:.1f}", f"{s['seconds']:.1f}",
                          f"{s['execs']:,}", f"{s.get('ft_start')} \u2192 {s.get('ft_end')}",
                          str(s.get("corpus_growth", 0)), str(len(s.get("new_signatures") or []))]
                         for s in summary.get("schedule") or []])
    crashes = "".join(
        f"<tr><td>{html.escape(c['target'])}</td><td><code>{html.escape(c['key'])}</code></td>"
        f"<td>{html.escape(c['title'])}</td><td>{html.escape(c['status'])}</td><td>{html.escape(c['reproduced'])}</td>"
        f"<td>{c['count']}</td><td><code>{html.escape(c['repro'])}</code></td></tr>"
        for c in summary["crashers"]) or '<tr><td colspan="7">no recorded crashers</td></tr>'
    covd = summary.get("coverage") or {}
    covrows = "".join(f"<tr><td>{html.escape(f)}</td><td>{p}%</td></tr>"
                      for f, p in sorted((covd.get("files") or {}).items()))
    settings = {k: summary[k] for k in ("out", "budget_s", "jobs", "seconds") if k in summary}
    shm_html = _shm_table(summary.get("shm_states") or {})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>famfs-fuzz nightly</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}code{{font-size:12px}}</style></head>
<body><h1>famfs-fuzz nightly</h1>
<p id="totals">{summary['execs']:,} executions, {summary['lookups_checked']:,} index lookups checked
({summary.get('lookups_ok', 0):,} ok, {summary.get('lookups_justified', 0):,} justified,
{summary.get('lookups_unjustified', 0):,} unjustified), {summary.get('internal_errors', 0):,} internal errors,
{summary['new_findings']} new signatures, {len(summary['crashers'])} recorded crashers,
in {summary.get('seconds', 0):.0f} s.</p>
{flat_html}
<h2>Targets</h2><table id="targets"><tr><th>target</th><th>round</th><th>execs</th><th>exec/s</th>
<th>lookups checked</th><th>unjustified lookups</th><th>internal errors</th><th>findings</th><th>new signatures</th>
<th>coverage (cov/ft)</th></tr>{rows}</table>
<h2>Over time</h2>
{_chart("exec/s per target", rate, "exec/s")}
{_chart("coverage of harness/famfs (libFuzzer edges) per target", cov, "edges")}
{_chart("crash signatures found", sigs, "signatures")}
{_chart("index lookups checked", looks, "lookups")}
{sched_html}
{shm_html}
<h2>Crashers</h2><table id="crashers"><tr><th>target</th><th>key</th><th>signature</th><th>status</th>
<th>reproduced</th><th>count</th><th>repro</th></tr>{crashes}</table>
<h2>Coverage of harness/famfs (corpus replay, coverage.py): {covd.get('total', 'n/a')}%</h2>
<table id="coverage"><tr><th>file</th><th>lines covered</th></tr>{covrows}</table>
<h2>Settings</h2><pre>{html.escape(json.dumps(settings, indent=2))}</pre>
</body></html>"""


def _shm_table(doc: dict[str, Any]) -> str:
    """shm_states per operation kind: states unpruned (2^stores per operation), admitted by the
    model, removed by the pruning, run (docs/shared-memory.md)."""
    if not doc.get("ops"):
        return ""
    rows = []
    for kind, v in doc["ops"].items():
        n = max(v["ops"], 1)
        rows.append([kind, f"{v['ops']:,}", f"2^{v['stores'] // n:,}", f"{v['silent'] // n:,}", f"{v['distinct']:,}",
                     f"2^{v['stores'] // n:,} - {v['distinct'] // n:,}", f"{v['run']:,}"])
    title = (f"Shared-memory states per operation (shm_states corpus replay: {doc.get('cases', 0)} cases, "
             f"{doc.get('states_run', 0):,} states, {doc.get('states_per_s', 0):,.0f} states/s)")
    return _table("shm-states", title, ["operation", "operations", "unpruned per op", "silent stores per op",
                                        "model states", "pruned per op", "states run"], rows)


def _table(table_id: str, title: str, headers: list[str], rows: list[list[str]]) -> str:
    """An HTML section: a heading and a table of escaped cells; empty when there are no rows."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<h2>{html.escape(title)}</h2><table id="{table_id}"><tr>{head}</tr>{body}</table>'
