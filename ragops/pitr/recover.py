"""`ragops db recover --to-time T`: the database-corruption scenario as one command, in place.

    checks        the target inside the archive's coverage (after closing the current segment and
                  waiting until the archive holds it, so the coverage reaches the present), the key
    maintenance   on: the router answers 503
    primary       stopped, its data directory moved aside (kept, never deleted), rebuilt from the
                  newest base backup before T plus the archived WAL, replayed to T and promoted on
                  its own port -- archiving on, into the same archive, on the new timeline
    replicas      stopped, moved aside, cloned again from the rebuilt primary (pg_basebackup)
    maintenance   off; the report: recovery point reached, RPO (T minus the last replayed commit), RTO
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ragops.backup.catalog import CreatePlan, parse_iso, storages
from ragops.backup.pipeline import Progress, say
from ragops.errors import OperationFailed, UsageError


@dataclass
class RecoverResult:
    target: str
    base_backup: str
    recovered_to: str | None
    rpo_seconds: float | None
    rto_seconds: float
    segments: int
    kept_aside: list[str]
    replicas: list[str]


def close_and_wait(config, node, timeout: float = 60.0, progress: Progress = None) -> str | None:
    """Close the primary's current segment and wait until the archive holds it (the shipper's sidecar)."""
    from ragops.db.connect import connect, node_dsn
    from ragops.pitr.wal import Shipper, sidecar_key

    with connect(node_dsn(config, node.name, dbname="postgres")) as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    say(progress, f"closed WAL segment {segment}; waiting until the archive holds it")
    storage, _copy = storages(config)
    shipper = Shipper(config)
    deadline = time.monotonic() + timeout
    while not storage.exists(sidecar_key(segment)):
        if time.monotonic() > deadline:
            raise OperationFailed(f"WAL segment {segment} did not reach the archive within {timeout:.0f}s "
                                  f"(is the shipper running? `ragops backup wal check`)")
        try:
            shipper.ship_once()   # the shipper process may take a file first: both uploads are the same bytes
        except OSError:
            pass
        time.sleep(0.2)
    return segment


def recover(config, to_time: str, *, dry_run: bool = False, progress: Progress = None,
            manage_service: bool = True) -> RecoverResult | CreatePlan:
    """`manage_service` False (a runbook that already set maintenance and stopped the colors): only the
    database is rebuilt; maintenance and the colors are left to the runbook's own steps."""
    from ragops.db.bringup import live_primary
    from ragops.pg import pgctl
    from ragops.pitr.coverage import coverage
    from ragops.pitr.restore import choose_base, needed_segments, parse_target
    from ragops.platforms import get_platform

    platform = get_platform(config)
    if not platform.owns_database_files or config.database.dsn:
        raise UsageError("db recover: rebuilds data directories ragops manages (platform: local); elsewhere use "
                         "`ragops backup physical restore --target-dir`")
    if config.database.ha != "manual":   # rebuilding a node under Patroni's feet would fight its leader election
        raise UsageError("db recover: Patroni manages the nodes (database.ha: patroni); restore with `ragops backup "
                         "physical restore --to-time T --target-dir DIR`, then `ragops down` and start from that "
                         "directory, or set database.ha: manual for the recovery")
    target = parse_target(to_time, None, False)
    primary = live_primary(config) or pgctl.managed_node(config, config.database.primary.name)
    if primary.running():
        close_and_wait(config, primary, progress=progress)
    storage, _copy = storages(config)
    cov = coverage(storage)
    base = choose_base(storage, cov, "latest", target)
    segments, covered = needed_segments(cov, base, target)
    replicas = [pgctl.managed_node(config, r.name) for r in config.database.replicas if r.name != primary.name]
    if dry_run:
        return CreatePlan(True, [f"checked: {covered}; {target.describe()} is inside it",
                                 "maintenance on (the router answers 503)",
                                 f"stop {primary.name} and move {primary.data_dir} aside (kept)",
                                 f"restore base backup {base.id} + {len(segments)} WAL segment(s) into it, "
                                 f"replay to {target.time} and promote",
                                 *[f"re-clone replica {r.name} (its data directory moved aside)" for r in replicas],
                                 "maintenance off; report RPO and RTO"])
    return _rebuild(config, platform, primary, replicas, base.id, target, progress, manage_service)


def _aside(node) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = node.data_dir.with_name(f"{node.data_dir.name}.before-recover-{stamp}")
    os.rename(node.data_dir, aside)
    return str(aside)


def _rebuild(config, platform, primary, replicas, base_id: str, target, progress: Progress,
             manage_service: bool = True) -> RecoverResult:
    from ragops.db.bringup import database_up
    from ragops.events import quiet
    from ragops.pitr.archive import ensure_shipper
    from ragops.pitr.restore import restore_physical
    from ragops.readiness import wait_ready

    started = time.monotonic()
    kept: list[str] = []
    if manage_service:
        say(progress, "maintenance on")
        platform.set_maintenance(True)
    try:
        for node in [*replicas, primary]:
            if node.running():
                say(progress, f"stopping {node.name}")
                node.stop()
            if node.initialized:
                kept.append(_aside(node))
        result = restore_physical(config, base_id, target, str(primary.data_dir), port=primary.port,
                                  keep_running=True, progress=progress, archive=True)
        say(progress, "re-cloning replicas from the rebuilt primary")
        try:
            database_up(config, progress or quiet)
        except OperationFailed as exc:   # seen on a loaded machine: a second pg_basebackup has worked
            say(progress, f"re-cloning failed ({exc.message}); once more")
            database_up(config, progress or quiet)
        ensure_shipper(platform, progress or quiet)
        for color in platform.was_live() if manage_service else []:
            wait_ready(platform, color, config.service.startup_timeout, progress or quiet)
    finally:
        if manage_service:
            platform.set_maintenance(False)
            say(progress, "maintenance off")
    if manage_service:
        _wait_serving(platform, config.service.startup_timeout)
    rto = round(time.monotonic() - started, 2)
    rpo = None
    if result.recovered_to:
        rpo = round((parse_iso(target.time) - parse_iso(result.recovered_to)).total_seconds(), 3)
    return RecoverResult(target.time, base_id, result.recovered_to, rpo, rto, result.segments, kept,
                         [r.name for r in replicas])


def _wait_serving(platform, timeout: float) -> None:
    """Until the router answers the readiness path with 200 (its health check saw the database come back)."""
    from ragops.smoke import wait_serving

    if not wait_serving(platform.router_url(), platform.config.service.readiness_path, timeout):
        url = platform.router_url().rstrip("/") + platform.config.service.readiness_path
        raise OperationFailed(f"the database is recovered but {url} does not answer 200 after {timeout:.0f}s")
