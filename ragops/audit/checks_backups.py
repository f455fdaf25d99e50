"""Backups and recovery: the guide's disaster-recovery plan (hourly incremental, daily full, 30-day
retention, cross-region copy) and the point-in-time window, read from the catalog and the archive."""
from __future__ import annotations

from pathlib import Path

from ragops.audit.facts import Facts, lsn_bytes
from ragops.audit.model import Outcome, check, failed, not_applicable, partial, passed


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


SEGMENT_BYTES = 16 * 2**20


def archive_current(facts: Facts) -> tuple[bool, str]:
    """Whether the WAL archive holds everything but the segment being written. The newest segment's
    age alone is no measure: an idle primary fills no segment (archive_timeout switches only after a
    write), so an old newest segment with the primary still inside the next one is current."""
    cov = facts.coverage
    newest = cov.newest
    if newest is None:
        return False, "the WAL archive holds no segment"
    age = facts.age_seconds(newest.stored_at.isoformat()) if newest.stored_at else None
    limit = facts.config.backups.max_wal_lag
    if age is not None and age <= limit:
        return True, f"newest segment {newest.name} is {age:.0f} s old"
    primary = next((n for n in facts.status.get("database") or []
                    if n.get("role") == "primary" and n.get("reachable")), None)
    position = lsn_bytes(primary.get("current_lsn")) if primary else None
    if primary is not None and position is not None and primary.get("timeline") == newest.timeline:
        pending = position - (newest.segno + 1) * SEGMENT_BYTES
        if pending < SEGMENT_BYTES:
            return True, (f"newest segment {newest.name} is {age or 0:.0f} s old and the primary has written "
                          f"{max(pending, 0)} bytes since (an idle database; archive_timeout ships them)")
        return False, f"the primary is {pending / SEGMENT_BYTES:.1f} segments past the newest archived {newest.name}"
    return False, f"newest segment {newest.name} is {age or 0:.0f} s old (max {limit:.0f} s)"


def finished(facts: Facts) -> list:
    """Manifests of finished backups, newest first."""
    return sorted((m for m, _v in facts.backups), key=lambda m: m.finished_at, reverse=True)


def is_incremental(manifest) -> bool:
    return bool((manifest.physical or {}).get("incremental"))


@check("backups.full-age", severity="critical", title="A recent full backup exists",
       expected="the newest full backup (logical, or physical non-incremental) younger than audit.full_backup_max_age",
       fix="ragops backup create   (schedule it daily: templates/cron/ragops-drills.cron)")
def full_age(facts: Facts) -> Outcome:
    full = [m for m in finished(facts) if not is_incremental(m)]
    if not full:
        return failed("no full backup in the catalog", fix="ragops backup create && ragops backup verify latest --restore")
    age = facts.age_seconds(full[0].finished_at) or 0.0
    observed = f"newest full backup {full[0].id} is {_hours(age)} old (max {_hours(facts.settings.full_backup_max_age)})"
    return passed(observed) if age <= facts.settings.full_backup_max_age else failed(observed)


@check("backups.incremental-age", severity="high", title="Hourly incremental backups (or a live WAL archive)",
       expected="a backup younger than audit.incremental_max_age, or the continuous WAL archive within backups.max_wal_lag",
       fix="ragops backup create --physical --incremental   (hourly), or enable backups.wal")
def incremental_age(facts: Facts) -> Outcome:
    newest = finished(facts)
    age = facts.age_seconds(newest[0].finished_at) if newest else None
    limit = facts.settings.incremental_max_age
    if age is not None and age <= limit:
        return passed(f"newest backup {newest[0].id} is {_hours(age)} old")
    if facts.config.backups.wal.enabled:
        current, why = archive_current(facts)
        if current:
            return passed(f"continuous WAL archive: {why}")
    seen = f"newest backup {_hours(age)} old" if age is not None else "no backup"
    return failed(f"{seen} (max {_hours(limit)}) and no fresh WAL archive")


@check("backups.encrypted", severity="critical", title="Every backup is encrypted",
       expected="each manifest records an encryption stage (age)",
       fix="keep backups.encryption_key set (a generated key on local); re-take unencrypted backups")
def encrypted(facts: Facts) -> Outcome:
    manifests = finished(facts)
    if not manifests:
        return not_applicable("no backup yet (see backups.full-age)")
    plain = [m.id for m in manifests if not (m.encryption or {}).get("format")]
    if plain:
        return failed(f"{len(plain)} unencrypted backup(s): {', '.join(plain[:5])}")
    return passed(f"{len(manifests)} backup(s), each encrypted with {manifests[0].encryption.get('format')}")


@check("backups.verified", severity="high", title="Every backup in retention was verified by a restore recently",
       expected="each listed backup restored by `backup verify --restore` within audit.verify_max_age",
       fix="ragops backup verify latest --restore   (and for each unverified id)")
def verified(facts: Facts) -> Outcome:
    rows = facts.backups
    if not rows:
        return failed("no backup to verify", fix="ragops backup create && ragops backup verify latest --restore")
    limit = facts.settings.verify_max_age
    fresh: list[str] = []
    stale: list[str] = []
    for manifest, record in rows:
        age = facts.age_seconds((record or {}).get("checked_at"))
        ok = bool(record and record.get("ok") and record.get("restore"))
        (fresh if ok and age is not None and age <= limit else stale).append(manifest.id)
    observed = f"{len(fresh)} of {len(rows)} backup(s) restore-verified within {_hours(limit)}"
    if not stale:
        return passed(observed)
    fix = "; ".join(f"ragops backup verify {i} --restore" for i in stale[:3])
    return partial(observed + f"; not: {', '.join(stale[:5])}", len(fresh) / len(rows), fix=fix)


@check("backups.second-copy", severity="high", title="A second copy of every backup (cross-region)",
       expected="backups.copy_to set and the newest backup present there",
       fix="set backups.copy_to: s3://<bucket-in-another-region>/ragops")
def second_copy(facts: Facts) -> Outcome:
    if not facts.config.backups.copy_to:
        return failed("backups.copy_to is not set: one storage holds every backup")
    manifests = finished(facts)
    if not manifests:
        return not_applicable("no backup yet (see backups.full-age)")
    copies = facts.copy_keys or set()
    missing = [m.id for m in manifests[:5] if m.id not in copies]
    if missing:
        return failed(f"not in {facts.config.backups.copy_to}: {', '.join(missing)}")
    return passed(f"the newest {min(5, len(manifests))} backup(s) are in {facts.config.backups.copy_to}")


@check("backups.retention", severity="medium", title="Retention keeps 30 days",
       expected="backups.retention.daily_days at least audit.retention_days (the guide: 30)",
       fix="set backups.retention.daily_days: 30")
def retention(facts: Facts) -> Outcome:
    days = facts.config.backups.retention.daily_days
    observed = f"backups.retention.daily_days: {days} (needed {facts.settings.retention_days})"
    return passed(observed) if days >= facts.settings.retention_days else failed(observed)


@check("backups.wal-archive", severity="high", title="The WAL archive is current and has no gap",
       expected="backups.wal.enabled, newest segment within backups.max_wal_lag, no missing segment",
       fix="ragops backup wal check   (then see the shipper in ragops status)")
def wal_archive(facts: Facts) -> Outcome:
    if not facts.config.backups.wal.enabled:
        return failed("backups.wal.enabled is false: no point-in-time recovery", fix="set backups.wal.enabled: true")
    cov = facts.coverage
    current, why = archive_current(facts)
    problems = [f"{len(cov.gaps)} missing segment(s), first {cov.gaps[0]}"] if cov.gaps else []
    if not current:
        problems.append(why)
    if problems:
        return failed("; ".join(problems))
    return passed(f"{len(cov.segments)} segment(s), no gap; {why}")


@check("backups.pitr-window", severity="high", title="Point-in-time recovery reaches within the RPO target",
       expected="a physical base backup and archived WAL up to less than slo.rpo_seconds ago",
       fix="ragops backup create --physical   (a base for the archive), and keep the WAL shipper running")
def pitr_window(facts: Facts) -> Outcome:
    if not facts.config.backups.wal.enabled:
        return failed("no WAL archive (backups.wal.enabled: false)", fix="set backups.wal.enabled: true")
    cov = facts.coverage
    earliest = cov.oldest_recoverable()
    if earliest is None:
        return failed("no physical base backup: the archive cannot be replayed from anything")
    newest = cov.newest_time()
    target = facts.config.slo.rpo_seconds
    timeout = facts.config.backups.wal.archive_timeout
    observed = f"restorable from {earliest} to {newest.isoformat() if newest else earliest}"
    current, why = archive_current(facts)
    if not current:
        return failed(f"{observed}: {why}")
    if timeout > target:   # a write waits up to archive_timeout before its segment is shipped
        return failed(f"{observed}; backups.wal.archive_timeout {timeout:.0f} s is longer than the RPO target {target:.0f} s",
                      fix=f"set backups.wal.archive_timeout below {target:.0f}s")
    return passed(f"{observed}; {why}; at most archive_timeout ({timeout:.0f} s) of writes at risk",
                  earliest=earliest, latest=newest.isoformat() if newest else None)


def data_directories(roots, max_depth: int = 5) -> list[Path]:
    """PostgreSQL data directories (PG_VERSION beside global/) below `roots`, not descending into one."""
    import os

    found = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            if "PG_VERSION" in names and "global" in dirs:
                found.append(here)
                dirs[:] = []
            elif len(here.relative_to(root).parts) >= max_depth:
                dirs[:] = []
    return found


def _archiving(data_dir: Path) -> str | None:
    """The archive setting a copy would start with, when it would archive; None when inert."""
    settings: dict[str, str] = {}
    for name in ("postgresql.conf", "postgresql.auto.conf"):
        try:
            lines = (data_dir / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            key, sep, value = line.partition("=")
            if sep and not key.strip().startswith("#"):
                settings[key.strip()] = value.split("#", 1)[0].strip().strip("'")
    if settings.get("archive_mode", "off") in ("on", "always") and settings.get("archive_command", "") not in ("", "/bin/true"):
        return f"archive_mode={settings['archive_mode']}, archive_command={settings['archive_command'][:60]}"
    return None


@check("backups.restored-copies-inert", severity="medium", title="No restored copy can write into the archive",
       expected="every PostgreSQL data directory besides the live nodes has archiving off",
       fix="set archive_mode = off in the copy's postgresql.auto.conf, or remove the copy (ragops db kept)")
def restored_copies_inert(facts: Facts) -> Outcome:
    from ragops.pg import pgctl
    from ragops.platforms import platform_class

    if facts.config.database.dsn or not platform_class(facts.config).owns_database_files:
        return not_applicable("ragops keeps no database files on this machine (external database, containers or pods)")

    live = {n.data_dir.resolve() for n in pgctl.managed_nodes(facts.config)}
    roots = [facts.config.state_dir, pgctl.server_home(facts.config)]
    copies, risky = 0, []
    for data_dir in data_directories(r for r in roots if r is not None and r.is_dir()):
        if data_dir.resolve() in live:
            continue
        copies += 1
        setting = _archiving(data_dir)
        if setting:
            risky.append(f"{data_dir}: {setting}")
    if risky:
        return failed(f"{len(risky)} copy(ies) would archive when started: {'; '.join(risky[:3])}")
    return passed(f"{copies} restored or kept-aside copy(ies) found, none would archive")
