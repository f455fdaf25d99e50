"""`backup check`: the freshness gate, and Prometheus textfile metrics for node_exporter."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ragops.backup.catalog import Manifest, manifests, now_utc, parse_iso, storages
from ragops.errors import GateFailed
from ragops.fsutil import write_atomic


@dataclass
class CheckResult:
    ok: bool
    newest_id: str | None
    newest_finished_at: str | None
    age_seconds: float | None
    max_age_seconds: float
    stored_bytes: int | None
    duration_seconds: float | None
    backups: int
    metrics_file: str | None


def check_backups(config, max_age_seconds: float, metrics_file: str | None = None,
                  now: datetime | None = None) -> CheckResult:
    """Raise GateFailed when the newest good backup (verification not failed) is older than max age."""
    storage, _copy = storages(config)
    now = now or now_utc()
    entries = manifests(storage)
    good = [m for m, v in entries if not (v is not None and not v.get("ok"))]
    newest = good[-1] if good else None
    age = (now - parse_iso(newest.finished_at)).total_seconds() if newest else None
    ok = age is not None and age <= max_age_seconds
    result = CheckResult(ok, newest.id if newest else None, newest.finished_at if newest else None,
                         round(age, 1) if age is not None else None, max_age_seconds,
                         newest.stored_bytes if newest else None, newest.duration_seconds if newest else None,
                         len(entries), str(config.resolve_path(metrics_file)) if metrics_file else None)
    if metrics_file:
        write_metrics(config, result, newest, entries)
    if not ok:
        if newest is None or age is None:
            raise GateFailed(f"no good backup in {storage.url}")
        raise GateFailed(f"newest good backup {newest.id} is {age / 3600:.1f}h old "
                         f"(max {max_age_seconds / 3600:.1f}h)")
    return result


def write_metrics(config, result: CheckResult, newest: Manifest | None, entries) -> None:
    """The textfile, written atomically: node_exporter must never read half a file."""
    labels = f'environment="{config.env_name}",project="{config.project}"'
    lines = []

    def metric(name: str, help_text: str, value) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{labels}}} {value}"])

    if newest is not None:
        metric("ragops_backup_last_success_timestamp_seconds", "Finish time of the newest good backup.",
               f"{parse_iso(newest.finished_at).timestamp():.3f}")
        metric("ragops_backup_last_size_bytes", "Stored size of the newest good backup.", newest.stored_bytes)
        metric("ragops_backup_last_duration_seconds", "Duration of the newest good backup.", newest.duration_seconds)
        metric("ragops_backup_age_seconds", "Age of the newest good backup.", result.age_seconds)
    verified = [v for _m, v in entries if v and v.get("ok")]
    if verified:
        metric("ragops_backup_last_verified_timestamp_seconds", "Time of the newest passed verification.",
               f"{max(parse_iso(v['checked_at']).timestamp() for v in verified):.3f}")
    metric("ragops_backup_count", "Backups with a manifest.", len(entries))
    metric("ragops_backup_check_ok", "1 if the newest good backup is within the maximum age.", int(result.ok))
    path = config.resolve_path(result.metrics_file)
    write_atomic(path, "\n".join(lines) + "\n", mode=0o644)   # node_exporter's textfile collector reads it
