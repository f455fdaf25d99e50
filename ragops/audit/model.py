"""What an audit check is and what it found.

A check is a plain function of the observed `Facts` (ragops/audit/facts.py) that returns an `Outcome`;
its fixed description (area, severity, what is expected, how to fix a miss) is registered with
`@check(...)`. Keeping observation (facts) apart from judgement (checks) lets every check be unit-tested
with a passing and a failing case, and lets one audit read each live source once.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low"]
Status = Literal["pass", "partial", "fail", "n/a", "waived"]

# How much a check weighs in its area's score (README "ragops audit": the formula).
SEVERITY_WEIGHT: dict[str, int] = {"critical": 10, "high": 5, "medium": 3, "low": 1}

# The guide's sections, in report order.
AREAS: dict[str, str] = {
    "edge": "Edge and security (Defense in Depth, Security Checklist)",
    "backups": "Backups and recovery (Disaster Recovery Plan: Backup Strategy)",
    "availability": "Availability (RTO/RPO Planning, high availability)",
    "observability": "Observability (Monitoring & Observability Architecture)",
    "operations": "Operations (drills, runbooks, Production Deployment Checklist)",
}


@dataclass
class Outcome:
    """What one check concluded. `credit` is the share of the check's weight it earns: 1 for a pass,
    0 for a miss, in between for evidence that exists but is stale (status `partial`)."""
    status: Status
    observed: str
    credit: float = 1.0
    fix: str | None = None                 # overrides the check's generic fix with the exact command
    evidence: dict[str, Any] = field(default_factory=dict)


def passed(observed: str, **evidence: Any) -> Outcome:
    return Outcome("pass", observed, 1.0, evidence=evidence)


def failed(observed: str, fix: str | None = None, **evidence: Any) -> Outcome:
    return Outcome("fail", observed, 0.0, fix, evidence)


def partial(observed: str, credit: float, fix: str | None = None, **evidence: Any) -> Outcome:
    return Outcome("partial", observed, max(0.0, min(1.0, credit)), fix, evidence)


def not_applicable(observed: str) -> Outcome:
    return Outcome("n/a", observed, 0.0)


@dataclass(frozen=True)
class Check:
    id: str                   # area.name, stable: waivers and SARIF rules refer to it
    area: str
    severity: Severity
    title: str
    expected: str
    fix: str
    run: Callable[[Any], Outcome]


@dataclass
class Finding:
    id: str
    area: str
    severity: Severity
    title: str
    status: Status
    observed: str
    expected: str
    fix: str
    credit: float
    waiver: dict | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> bool:
        """Whether it weighs in the score: not applicable and waived checks do not."""
        return self.status not in ("n/a", "waived")

    @property
    def missed(self) -> bool:
        return self.status in ("fail", "partial")

    def to_dict(self) -> dict:
        return asdict(self)


CHECKS: dict[str, Check] = {}


def check(check_id: str, *, severity: Severity, title: str, expected: str, fix: str) -> Callable:
    """Register a check function under `check_id` (its area is the part before the dot)."""
    area = check_id.split(".", 1)[0]
    if area not in AREAS:
        raise ValueError(f"check {check_id}: unknown area {area!r}")

    def register(func: Callable[[Any], Outcome]) -> Callable[[Any], Outcome]:
        if check_id in CHECKS:
            raise ValueError(f"check {check_id} registered twice")
        CHECKS[check_id] = Check(check_id, area, severity, title, expected, fix, func)
        return func
    return register
