"""`ragops audit`: the production guide checked against the live environment."""
from __future__ import annotations

import typer

FORMATS = ("text", "json", "sarif", "junit")


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(ctx: typer.Context,
          min_score: int | None = typer.Option(None, "--min-score", min=0, max=100,
                                               help="Exit 4 when the overall score is below this (default audit.min_score)."),
          only: list[str] | None = typer.Option(None, "--only", help="Only this area (repeatable): edge, backups, "
                                                "availability, observability, operations."),
          evidence: str | None = typer.Option(None, "--evidence", help="Write a dated evidence bundle into this folder."),
          list_checks: bool = typer.Option(False, "--list", help="List every check with its area and severity; run none."),
          ) -> None:
    """Score the live environment against the production guide, read-only: each check's severity,
    what it observed, what was expected and the exact fix. Output: -o text|json|sarif|junit.

    Exit 0 when no critical check fails and the score is at least --min-score; 3 when a critical
    check fails; 4 when the score is below --min-score; 2 for bad options or waivers.

    Example: ragops audit

    Example: ragops -e production audit --min-score 80 -o sarif > audit.sarif

    Example: ragops audit --only backups --evidence ./audit-evidence
    """
    env = ctx.obj
    from ragops.audit.engine import load_checks, run_audit

    if list_checks:
        rows = [{"id": c.id, "area": c.area, "severity": c.severity, "title": c.title, "expected": c.expected}
                for c in load_checks().values()]
        env.emit(rows, lambda data: "\n".join(f"{r['id']:40} {r['severity']:8} {r['title']}" for r in data))
        return
    from ragops.runbook.inventory import audit_sources

    report = run_audit(env.config, only=only, min_score=min_score, **audit_sources(env.config))
    data = report.to_dict()
    if evidence:
        from pathlib import Path

        from ragops.audit.evidence import write_bundle

        folder = write_bundle(Path(evidence), data, report.drill_reports, report.verifications)
        data["evidence"] = str(folder)
        env.status(f"evidence bundle: {folder}")
    _print(env, data)
    if report.exit_code:
        from ragops.errors import RagopsError

        error = RagopsError(f"audit of {report.environment}: {report.verdict}",
                            hint="each finding above names its fix; accepted risks go in audit.waivers")
        error.exit_code = report.exit_code
        raise error


def _print(env, data: dict) -> None:
    import json

    from ragops.audit import render
    from ragops.secrets import redact, redact_data

    if env.output == "sarif":
        print(json.dumps(redact_data(render.sarif(data)), indent=2))
    elif env.output == "junit":
        print(redact(render.junit(data)), end="")
    elif env.json:
        env.print_json(data)
    else:
        env.emit(data, lambda d: render.text(d, verbose=env.verbosity > 0))
