"""The audit report as text (a terminal), Markdown, HTML (with an inline-SVG chart), SARIF 2.1.0 and
JUnit XML. Everything passes through the redactor before it is printed or written."""
from __future__ import annotations

import html
import json
from collections.abc import Sequence
from xml.etree import ElementTree as ET

from ragops import __version__
from ragops.audit.model import AREAS

MARK = {"pass": "ok", "partial": "STALE", "fail": "MISS", "n/a": "n/a", "waived": "waived"}
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def text(report: dict, verbose: bool = False) -> str:
    lines = [f"audit of {report['environment']} ({report['platform']}) at {report['generated_at']}: "
             f"score {report['score']}/100 ({report['seconds']:.1f}s)"]
    for area, title in AREAS.items():
        findings = [f for f in report["findings"] if f["area"] == area]
        if not findings:
            continue
        lines.append(f"\n{title}: {report['areas'][area]}/100")
        for f in findings:
            if f["status"] in ("pass", "n/a") and not verbose:
                continue
            lines.append(f"  {MARK[f['status']]:6} {f['severity']:8} {f['id']}: {f['observed']}")
            if f["status"] in ("fail", "partial"):
                lines.append(f"         expected: {f['expected']}")
                lines.append(f"         fix: {f['fix']}")
            if f.get("waiver"):
                w = f["waiver"]
                state = "EXPIRED" if w.get("expired") else "until"
                lines.append(f"         waiver ({state} {w['expires']}, {w['by']}): {w['reason']}")
        hidden = sum(1 for f in findings if f["status"] in ("pass", "n/a"))
        if hidden and not verbose:
            lines.append(f"  ({hidden} passed or not applicable; -v lists them)")
    c = report["counts"]
    lines.append(f"\n{c['pass']} passed, {c['partial']} stale, {c['fail']} failed, {c['waived']} waived, "
                 f"{c['n/a']} not applicable: {report['verdict']}")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    rows = [f"# Audit of {report['environment']}", "",
            f"Generated {report['generated_at']} by ragops {__version__}; platform {report['platform']}. "
            f"**Score {report['score']}/100** - {report['verdict']}.", "",
            "| area | score |", "|---|---|"]
    rows += [f"| {AREAS[a]} | {s} |" for a, s in report["areas"].items()]
    rows += ["", "| check | severity | status | observed | expected | fix |", "|---|---|---|---|---|---|"]
    for f in report["findings"]:
        cells = [f["id"], f["severity"], f["status"], f["observed"], f["expected"],
                 f["fix"] if f["status"] in ("fail", "partial") else ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _bars(items: Sequence[tuple[str, float, float | None]], width: int = 640, unit: str = "") -> str:
    """A horizontal bar per item (label, value, target): the value's bar and the target's tick."""
    if not items:
        return "<p>none</p>"
    top = max([v for _, v, _ in items] + [t for _, _, t in items if t] + [1.0])
    height = 24 * len(items) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, (label, value, target) in enumerate(items):
        y = 5 + 24 * i
        length = (width - 260) * value / top
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label)}</text>')
        parts.append(f'<rect x="200" y="{y}" width="{length:.1f}" height="16" fill="#4a7"/>')
        parts.append(f'<text x="{205 + length:.1f}" y="{y + 13}" font-size="11">{value:g}{unit}</text>')
        if target:
            x = 200 + (width - 260) * target / top
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2}" y2="{y + 18}" stroke="#c33" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(report: dict, drills: list[dict]) -> str:
    scores = _bars([(a, float(s), None) for a, s in report["areas"].items()] + [("overall", float(report["score"]), None)])
    rto = _bars([(d["drill"], float(d["rto"]["seconds"]), d["rto"].get("target_seconds"))
                 for d in drills if (d.get("rto") or {}).get("seconds") is not None], unit=" s")
    rpo = _bars([(d["drill"], float(d["rpo"]["seconds"]), d["rpo"].get("target_seconds"))
                 for d in drills if (d.get("rpo") or {}).get("seconds") is not None], unit=" s")
    rows = "".join(
        f"<tr class='{html.escape(f['status'])}'><td>{html.escape(f['id'])}</td><td>{f['severity']}</td><td>{f['status']}</td>"
        f"<td>{html.escape(f['observed'])}</td><td>{html.escape(f['expected'])}</td>"
        f"<td>{html.escape(f['fix']) if f['status'] in ('fail', 'partial') else ''}</td></tr>"
        for f in report["findings"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Audit of {html.escape(report['environment'])}</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:3px;font-size:13px}"
            "table{border-collapse:collapse}.fail td{background:#fdd}.partial td{background:#ffd}</style></head><body>"
            f"<h1>Audit of {html.escape(report['environment'])}: {report['score']}/100</h1>"
            f"<p>{html.escape(report['generated_at'])} - {html.escape(report['verdict'])}</p>"
            f"<h2>Scores by area</h2>{scores}<h2>Last drills: RTO against target (red tick)</h2>{rto}"
            f"<h2>Last drills: RPO against target</h2>{rpo}"
            "<h2>Findings</h2><table><tr><th>check</th><th>severity</th><th>status</th><th>observed</th>"
            f"<th>expected</th><th>fix</th></tr>{rows}</table></body></html>\n")


def sarif(report: dict) -> dict:
    rules = [{"id": f["id"], "name": f["id"].replace(".", "_"), "shortDescription": {"text": f["title"]},
              "fullDescription": {"text": f"Expected: {f['expected']}"}, "help": {"text": f"Fix: {f['fix']}"},
              "defaultConfiguration": {"level": SARIF_LEVEL[f["severity"]]},
              "properties": {"area": f["area"], "severity": f["severity"]}} for f in report["findings"]]
    results = []
    for f in report["findings"]:
        if f["status"] == "n/a":
            continue
        result = {"ruleId": f["id"], "level": SARIF_LEVEL[f["severity"]] if f["status"] in ("fail", "partial") else "none",
                  "kind": "fail" if f["status"] in ("fail", "partial") else "pass",
                  "message": {"text": f"{f['observed']} (expected: {f['expected']}; fix: {f['fix']})"},
                  "locations": [{"logicalLocations": [{"name": report["environment"], "kind": "resource"}]}],
                  "properties": {"status": f["status"], "credit": f["credit"]}}
        if f["status"] == "waived":
            result["suppressions"] = [{"kind": "external", "justification": f["waiver"]["reason"]}]
        results.append(result)
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "ragops-audit", "version": __version__,
                                          "informationUri": "https://example.invalid/ragops", "rules": rules}},
                      "results": results,
                      "properties": {"environment": report["environment"], "score": report["score"],
                                     "areas": report["areas"]}}]}


def junit(report: dict) -> str:
    suites = ET.Element("testsuites", name=f"ragops audit {report['environment']}")
    for area in AREAS:
        findings = [f for f in report["findings"] if f["area"] == area]
        if not findings:
            continue
        suite = ET.SubElement(suites, "testsuite", name=area, tests=str(len(findings)),
                              failures=str(sum(f["status"] in ("fail", "partial") for f in findings)),
                              skipped=str(sum(f["status"] in ("n/a", "waived") for f in findings)))
        for f in findings:
            case = ET.SubElement(suite, "testcase", classname=f"audit.{area}", name=f["id"])
            if f["status"] in ("fail", "partial"):
                failure = ET.SubElement(case, "failure", type=f["severity"], message=f["observed"])
                failure.text = f"expected: {f['expected']}\nfix: {f['fix']}"
            elif f["status"] in ("n/a", "waived"):
                ET.SubElement(case, "skipped", message=f["observed"] if f["status"] == "n/a" else f["waiver"]["reason"])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def as_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"
