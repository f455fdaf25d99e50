"""DR drills: run a drill runbook against a non-production environment, measure RTO and RPO,
compare them with `slo` in ragops.yaml and write report.json, report.md and report.html (with an
inline-SVG timeline of the steps; no external assets).

A drill runbook says what to measure in its `drill` section:

    drill:
      rto: {from: restore, to: verify}                   # recovery time: start of one step to end of another
      rpo: "{{ steps.latest.outputs.age_seconds }}"       # data at risk, in seconds (a template)

Without `rto`, the whole run is the recovery time; without `rpo`, RPO is not measured (reported as
such, never as met).
"""
from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragops.errors import ConfigError, ExitCode, UsageError
from ragops.runbook import expr


def resolve_drill(engine, name: str):
    """`backup-restore` and `drill-backup-restore` both name runbooks/drill-backup-restore.yaml."""
    for candidate in dict.fromkeys([name, name if name.startswith("drill-") else f"drill-{name}"]):
        try:
            return engine.load(candidate)
        except ConfigError as exc:
            if "no runbook named" not in exc.message:
                raise
    raise ConfigError(f"no drill named {name!r} (drills: {', '.join(known_drills(engine.dirs)) or 'none'})",
                      hint="ragops runbook list")


def known_drills(dirs) -> list[str]:
    """The drill runbooks (named drill-*) in the runbook folders, without the prefix."""
    names = {p.stem for d in dirs if Path(d).is_dir() for p in [*Path(d).glob("drill-*.yaml"), *Path(d).glob("drill-*.yml")]}
    return sorted(n.removeprefix("drill-") for n in names)


def run_drill(config, name: str, *, engine, inputs: dict | None = None, report_dir: str | Path | None = None,
              allow_production: bool = False) -> dict:
    if config.env.production and not allow_production:
        raise UsageError(f"environment {config.env_name!r} is marked production: true; drills run against "
                         f"non-production environments (pass --allow-production to drill it anyway)")
    runbook = resolve_drill(engine, name)
    result = engine.run(runbook, inputs or {})
    context = engine.context
    rto_seconds, rto_note = _measure_rto(runbook, result, context)
    rpo_seconds, rpo_note = _measure_rpo(runbook, context)
    targets = config.slo
    rto = {"seconds": rto_seconds, "target_seconds": targets.rto_seconds, "note": rto_note,
           "met": None if rto_seconds is None else rto_seconds <= targets.rto_seconds}
    rpo = {"seconds": rpo_seconds, "target_seconds": targets.rpo_seconds, "note": rpo_note,
           "met": None if rpo_seconds is None else rpo_seconds <= targets.rpo_seconds}
    if result.exit_code:
        exit_code, verdict = result.exit_code, f"drill run {result.status.replace('_', ' ')} at {result.failed_step}"
    elif rto["met"] is False or rpo["met"] is False:
        missed = [k.upper() for k, m in (("rto", rto), ("rpo", rpo)) if m["met"] is False]
        exit_code, verdict = int(ExitCode.GATE_FAILED), f"target missed: {', '.join(missed)}"
    else:
        exit_code, verdict = 0, "passed"
    folder = Path(report_dir) if report_dir else config.state_dir / "drills" / (result.run_id or "drill")
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "drill": runbook.name, "description": runbook.description.strip(), "environment": config.env_name,
        "platform": config.env.platform, "run_id": result.run_id, "started_at": result.started_at,
        "finished_at": result.finished_at, "duration_seconds": result.duration, "status": result.status,
        "verdict": verdict, "exit_code": exit_code, "rto": rto, "rpo": rpo,
        "steps": [{**{k: s.get(k) for k in ("id", "name", "action", "status", "duration", "error", "reason")},
                   "detail": _detail(s)} for s in result.steps],
        "timeline": result.timeline, "outputs": result.outputs, "actor": engine.actor,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "report_dir": str(folder), "audit_log": f"{result.run_dir}/audit.jsonl" if result.run_dir else None,
    }
    from ragops.secrets import redact, redact_data

    report = redact_data(report)
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "report.md").write_text(redact(render_markdown(report)))
    (folder / "report.html").write_text(redact(render_html(report)))
    return report


def _measure_rto(runbook, result, context: dict) -> tuple[float | None, str]:
    spec = runbook.drill.get("rto") if isinstance(runbook.drill, dict) else None
    timeline = result.timeline
    if isinstance(spec, str):     # a template, e.g. the operation's own measurement
        value, note = _measure_rpo(runbook, context, spec)
        return value, note
    if not timeline:
        return None, "no step ran"
    if isinstance(spec, dict):
        starts = [e for e in timeline if e["step"] == spec.get("from")]
        ends = [e for e in timeline if e["step"] == spec.get("to") and e["status"] == "ok"]
        if not starts or not ends:
            return None, f"steps {spec.get('from')} .. {spec.get('to')} did not both complete"
        return round(ends[-1]["end"] - starts[0]["start"], 3), f"from the start of {spec['from']} to the end of {spec['to']}"
    return round(result.duration, 3), "the whole drill run"


def _measure_rpo(runbook, context: dict, spec=None) -> tuple[float | None, str]:
    if spec is None:
        spec = runbook.drill.get("rpo") if isinstance(runbook.drill, dict) else None
    if spec is None:
        return None, "not measured by this drill"
    try:
        value = expr.render(spec, context)
    except expr.ExpressionError as exc:
        return None, f"not measured: {exc.message}"
    try:
        return round(float(value), 3), _describe(spec)
    except (TypeError, ValueError):
        return None, f"not measured: {_describe(spec)} gave {value!r}"


def _describe(spec: str) -> str:
    """Say in words where a measurement came from, instead of printing its template."""
    refs = dict.fromkeys(re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_]+)", str(spec)))
    if not refs:
        return "computed by the drill's expression"
    return "reported by " + ", else ".join(f"step {step} ({output.replace('_', ' ')})" for step, output in refs)


def _detail(step: dict) -> str:
    """The Detail column: why a step failed or was skipped, else what it reported (short)."""
    if step.get("error") or step.get("reason"):
        return str(step.get("error") or step.get("reason"))
    parts = []
    for key, value in (step.get("outputs") or {}).items():
        if isinstance(value, (dict, list)) or value is None or value == "":
            continue
        text = " ".join(str(value).split())
        parts.append(f"{key}={text[:40] + '…' if len(text) > 40 else text}")
    detail = ", ".join(parts[:4])
    return detail[:157] + "…" if len(detail) > 160 else detail


def _fmt(seconds: Any) -> str:
    from ragops.durations import format_duration

    return "—" if seconds is None else format_duration(float(seconds))


def render_markdown(report: dict) -> str:
    def met(m):
        return "✅ met" if m["met"] else ("❌ missed" if m["met"] is False else "— not measured")
    lines = [f"# DR drill: {report['drill']}", "",
             f"- Environment: `{report['environment']}` ({report['platform']})",
             f"- Run: `{report['run_id']}` by {report['actor']}",
             f"- Started: {report['started_at']} · finished: {report['finished_at']}",
             f"- Verdict: **{report['verdict']}** (exit {report['exit_code']})", "",
             "| Objective | Measured | Target | Result | How |", "|---|---|---|---|---|",
             *(f"| {name.upper()} | {_fmt(report[name]['seconds'])} | {_fmt(report[name]['target_seconds'])} | "
               f"{met(report[name])} | {report[name]['note']} |" for name in ("rto", "rpo")),
             "", "## Steps", "", "| Step | Action | Result | Duration | Detail |", "|---|---|---|---|---|"]
    for step in report["steps"]:
        detail = (step.get("detail") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {step['id']} | {step['action']} | {step['status']} | {_fmt(step.get('duration'))} | {detail} |")
    if report.get("description"):
        lines += ["", "## About this drill", "", report["description"]]
    if report.get("audit_log"):
        lines += ["", f"Audit log: `{report['audit_log']}`"]
    return "\n".join(lines) + "\n"


def timeline_svg(timeline: list[dict], width: int = 760) -> str:
    """A horizontal bar per step execution, positioned by start and end offsets."""
    row, label_w, pad = 26, 190, 10
    total = max([e["end"] for e in timeline] + [0.001])
    height = row * len(timeline) + 40
    chart_w = width - label_w - pad * 2
    colors = {"ok": "#2e9e5b", "skipped": "#b0b0b0", "timeout": "#d9822b"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of the drill steps" '
             f'font-family="sans-serif" font-size="12">']
    for tick in range(5):
        x = label_w + pad + chart_w * tick / 4
        anchor = "end" if tick == 4 else "middle"   # the last label ends at the right edge, not beyond it
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}" fill="#666">'
                     f'{html.escape(_fmt(total * tick / 4))}</text>')
    for index, entry in enumerate(timeline):
        y = index * row + 6
        x = label_w + pad + chart_w * entry["start"] / total
        w = max(chart_w * (entry["end"] - entry["start"]) / total, 2)
        color = colors.get(entry["status"], "#c0392b")
        title = html.escape(f"{entry['step']}: {entry['status']} {_fmt(entry['end'] - entry['start'])}")
        parts.append(f'<text x="{label_w}" y="{y + 14}" text-anchor="end" fill="#222">{html.escape(entry["step"])}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 8}" rx="3" fill="{color}">'
                     f'<title>{title}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict) -> str:
    def cell(m):
        if m["met"] is None:
            return '<td class="na">not measured</td>'
        return f'<td class="{"ok" if m["met"] else "bad"}">{"met" if m["met"] else "MISSED"}</td>'
    rows = "".join(
        f"<tr><td>{html.escape(s['id'])}</td><td>{html.escape(s['action'])}</td><td>{html.escape(str(s['status']))}</td>"
        f"<td>{html.escape(_fmt(s.get('duration')))}</td><td>{html.escape(s.get('detail') or '')}</td></tr>"
        for s in report["steps"])
    objectives = "".join(
        f"<tr><th>{key.upper()}</th><td>{html.escape(_fmt(report[key]['seconds']))}</td>"
        f"<td>{html.escape(_fmt(report[key]['target_seconds']))}</td>{cell(report[key])}"
        f"<td>{html.escape(report[key]['note'])}</td></tr>" for key in ("rto", "rpo"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DR drill {html.escape(report['drill'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 60em; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; }}
.ok {{ color: #1e7e44; font-weight: bold; }} .bad {{ color: #b02a1a; font-weight: bold; }} .na {{ color: #777; }}
</style></head><body>
<h1>DR drill: {html.escape(report['drill'])}</h1>
<p>Environment <code>{html.escape(report['environment'])}</code> ({html.escape(report['platform'])}) · run
<code>{html.escape(str(report['run_id']))}</code> by {html.escape(report['actor'])} · {html.escape(str(report['started_at']))}</p>
<p>Verdict: <strong class="{'ok' if report['exit_code'] == 0 else 'bad'}">{html.escape(report['verdict'])}</strong>
(exit {report['exit_code']})</p>
<table><tr><th>Objective</th><th>Measured</th><th>Target</th><th>Result</th><th>How</th></tr>{objectives}</table>
<h2>Timeline</h2>
{timeline_svg(report['timeline'])}
<h2>Steps</h2>
<table><tr><th>Step</th><th>Action</th><th>Result</th><th>Duration</th><th>Detail</th></tr>{rows}</table>
<p>{html.escape(report.get('description') or '')}</p>
</body></html>
"""
