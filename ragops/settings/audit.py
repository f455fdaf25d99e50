"""ragops.yaml `audit`: the targets `ragops audit` holds the environment to, and waivers.

The defaults are the production guide's: daily full and hourly incremental backups, 30-day retention,
replica lag warned at 50 MB and critical at 500 MB, certificates warned 30 days and critical 7 days
before expiry, drills weekly (backup restore), monthly (deploy rollback, PITR) and quarterly (failover).
"""
from __future__ import annotations

import datetime as dt
import re

from pydantic import Field, field_validator

from ragops.config_types import Duration, Strict

DAY = 86400.0


class Waiver(Strict):
    """An accepted miss: shown as waived with its reason, not counted, until `expires` (a date)."""
    check: str = Field(pattern=r"^[a-z]+\.[a-z0-9-]+$")
    reason: str = Field(min_length=3, max_length=500)
    by: str = Field(min_length=1, max_length=100)
    expires: dt.date


class AuditSettings(Strict):
    min_score: int = Field(0, ge=0, le=100)          # `ragops audit` exits 4 below it (also --min-score)
    full_backup_max_age: Duration = 26 * 3600.0      # daily full backups, with two hours of slack
    incremental_max_age: Duration = 65 * 60.0        # hourly incremental backups, with five minutes of slack
    verify_max_age: Duration = 7 * DAY               # each backup in retention restored by a verify within
    retention_days: int = Field(30, ge=1, le=3650)   # the guide's 30-day retention
    replica_lag_warn_bytes: int = Field(50 * 2**20, ge=0)
    replica_lag_critical_bytes: int = Field(500 * 2**20, ge=0)
    slot_retained_warn_bytes: int = Field(1024 * 2**20, ge=0)   # an inactive slot holding more WAL than this
    tls_url: str | None = None                       # https://host[:port] of the public endpoint, when TLS is configured
    cert_warn_days: int = Field(30, ge=1, le=365)
    cert_critical_days: int = Field(7, ge=0, le=365)
    drill_reports: list[str] = []                    # folders with drill reports (default: <state_dir>/drills)
    drill_periods: dict[str, Duration] = Field(default_factory=lambda: {
        "backup-restore": 7 * DAY, "deploy-rollback": 31 * DAY, "pitr": 31 * DAY,
        "failover": 92 * DAY, "auto-failover": 92 * DAY})
    default_drill_period: Duration = 92 * DAY
    waivers: list[Waiver] = []

    @field_validator("tls_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https://[^/\s:]+(:\d{1,5})?/?", value):
            raise ValueError(f"expected https://host[:port], got {value!r}")
        return value
