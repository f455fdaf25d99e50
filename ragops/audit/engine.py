"""Run the audit: every registered check against one set of live facts, waivers applied, scored.

Scoring (README "ragops audit"): a check weighs by severity (critical 10, high 5, medium 3, low 1)
and earns its weight times its credit (1 pass, 0 miss, part of it for stale evidence); an area's score
is earned / possible x 100 over the checks that count (not applicable and waived ones do not); the
overall score is the same sum over every area. No counting check in an area: that area scores 100.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ragops.audit.facts import Facts, Unobservable
from ragops.audit.model import AREAS, CHECKS, SEVERITY_WEIGHT, Check, Finding, Outcome, failed
from ragops.errors import ExitCode, UsageError

# the check modules register themselves on import
CHECK_MODULES = ("ragops.audit.checks_edge", "ragops.audit.checks_backups", "ragops.audit.checks_availability",
                 "ragops.audit.checks_operations")


def load_checks() -> dict[str, Check]:
    import importlib

    for name in CHECK_MODULES:
        importlib.import_module(name)
    return CHECKS


@dataclass
class AuditReport:
    environment: str
    platform: str
    generated_at: str
    seconds: float
    score: int
    areas: dict[str, int]
    findings: list[Finding]
    exit_code: int
    verdict: str
    min_score: int
    expired_waivers: list[dict] = field(default_factory=list)
    drill_reports: list[dict] = field(default_factory=list)        # the drill reports the checks relied on
    verifications: dict[str, dict] = field(default_factory=dict)   # backup id -> its verification record

    def to_dict(self) -> dict:
        return {"environment": self.environment, "platform": self.platform, "generated_at": self.generated_at,
                "seconds": self.seconds, "score": self.score, "areas": self.areas, "min_score": self.min_score,
                "exit_code": self.exit_code, "verdict": self.verdict,
                "counts": counts(self.findings), "expired_waivers": self.expired_waivers,
                "findings": [f.to_dict() for f in self.findings]}


def counts(findings: list[Finding]) -> dict[str, int]:
    result = {"pass": 0, "partial": 0, "fail": 0, "n/a": 0, "waived": 0}
    for finding in findings:
        result[finding.status] += 1
    return result


def evaluate(spec: Check, facts: Facts) -> Outcome:
    try:
        return spec.run(facts)
    except Unobservable as exc:
        return failed(f"could not observe: {exc}")


def apply_waiver(finding: Finding, waivers: list, today) -> dict | None:
    """Waive a missed finding while its waiver holds; return the waiver when it has expired."""
    for waiver in waivers:
        if waiver.check != finding.id:
            continue
        record = {"reason": waiver.reason, "by": waiver.by, "expires": waiver.expires.isoformat()}
        if waiver.expires < today:
            finding.waiver = {**record, "expired": True}
            return {"check": waiver.check, **record}
        if finding.missed:
            finding.status, finding.waiver = "waived", record
        return None
    return None


def score(findings: list[Finding]) -> tuple[int, dict[str, int]]:
    def of(group: list[Finding]) -> int:
        possible = sum(SEVERITY_WEIGHT[f.severity] for f in group if f.counts)
        earned = sum(SEVERITY_WEIGHT[f.severity] * f.credit for f in group if f.counts)
        return 100 if not possible else round(100 * earned / possible)
    areas = {area: of([f for f in findings if f.area == area]) for area in AREAS
             if any(f.area == area for f in findings)}
    return of(findings), areas


def verdict_of(findings: list[Finding], overall: int, min_score: int) -> tuple[int, str]:
    critical = [f.id for f in findings if f.severity == "critical" and f.status == "fail"]
    if critical:
        return int(ExitCode.GATE_FAILED), f"critical check(s) failed: {', '.join(critical)}"
    if overall < min_score:
        return int(ExitCode.LOCKED), f"score {overall} is below the minimum {min_score}"
    missed = [f for f in findings if f.missed]
    if missed:
        return 0, f"{len(missed)} finding(s) to fix, none critical; score {overall}"
    return 0, "every check passed"


def run_audit(config, *, only: list[str] | None = None, min_score: int | None = None,
              now: datetime | None = None, runbooks: Callable[[], list[dict]] | None = None,
              runbook_runs: Callable[[], list[dict]] | None = None) -> AuditReport:
    """Run every check (or those of the `only` areas) read-only against the live environment.
    `runbooks` and `runbook_runs` supply what the runbook engine knows (ragops.runbook.inventory)."""
    started = time.monotonic()
    checks = load_checks()
    unknown = [a for a in only or [] if a not in AREAS]
    if unknown:
        raise UsageError(f"--only: unknown area {unknown[0]!r} (areas: {', '.join(AREAS)})")
    settings = config.env.audit
    known_ids = set(checks)
    for index, waiver in enumerate(settings.waivers):
        if waiver.check not in known_ids:
            raise UsageError(f"audit.waivers[{index}].check: no check named {waiver.check!r} (ragops audit --list)")
    facts = Facts(config, now=now, runbooks=runbooks, runbook_runs=runbook_runs)
    findings, expired = [], []
    for spec in sorted(checks.values(), key=lambda c: (list(AREAS).index(c.area), c.id)):
        if only and spec.area not in only:
            continue
        outcome = evaluate(spec, facts)
        finding = Finding(spec.id, spec.area, spec.severity, spec.title, outcome.status, outcome.observed,
                          spec.expected, outcome.fix or spec.fix, outcome.credit if outcome.status != "n/a" else 0.0,
                          evidence=outcome.evidence)
        lapsed = apply_waiver(finding, settings.waivers, facts.now.date())
        if lapsed:
            expired.append(lapsed)
        findings.append(finding)
    drills, verifications = relied_on(facts, findings)
    floor = settings.min_score if min_score is None else min_score
    overall, areas = score(findings)
    code, verdict = verdict_of(findings, overall, floor)
    return AuditReport(config.env_name, config.env.platform, facts.now.astimezone(UTC).isoformat(timespec="seconds"),
                       round(time.monotonic() - started, 2), overall, areas, findings, code, verdict, floor, expired,
                       drills, verifications)


def relied_on(facts: Facts, findings: list[Finding]) -> tuple[list[dict], dict[str, dict]]:
    """The drill reports and backup verification records the findings rest on (for --evidence)."""
    paths = {f.evidence.get("report") for f in findings if f.evidence.get("report")}
    try:
        drills = [r for r in facts.drill_reports if r.get("_path") in paths]
    except Unobservable:
        drills = []
    try:
        verifications = {m.id: v for m, v in facts.backups if v}
    except Unobservable:
        verifications = {}
    return drills, verifications
