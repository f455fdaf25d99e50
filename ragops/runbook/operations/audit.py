"""The production audit as a runbook gate (pre-deploy's `audit` step)."""
from __future__ import annotations

from typing import Any

from ragops.errors import GateFailed
from ragops.runbook.operations.common import number, with_outputs
from ragops.runbook.operations.registry import Context, operation


@operation("audit.run", gate=True)
def audit_run(ctx: Context, *, min_score: Any = 0, only: list[str] | None = None) -> dict:
    """Run `ragops audit` read-only; fails the gate when a critical check fails or the score is below min_score."""
    from ragops.audit.engine import run_audit

    report = run_audit(ctx.require_config(), only=only, min_score=int(number(min_score, "min_score") or 0),
                       **ctx.engine.audit_sources())
    missed = [f"{f.id} ({f.severity})" for f in report.findings if f.missed]
    outputs = {"score": report.score, "areas": report.areas, "verdict": report.verdict, "missed": missed}
    ctx.progress(f"audit score {report.score}/100: {report.verdict}")
    if report.exit_code:
        raise with_outputs(GateFailed(f"audit: {report.verdict}"), outputs)
    return outputs
