"""`ragops db recover --to-time T`: the database-corruption scenario as one command, in place.

    plan          (ragops/pitr/plan.py, after closing the current segment so the archive reaches now)
                  timeline path, base, every segment fetched, checked and read by pg_waldump, the
                  stop point: nothing is stopped before all of it passed
    lay down      the base extracted into <primary>.recovering-<time> while the service still runs
    maintenance   on: the router answers 503
    primary       stopped, its data directory kept aside as `original` (never deleted), the new one
                  put in its place, replayed to the stop point, paused, the reached LSN checked,
                  promoted -- archiving on, into the same archive, on a timeline the archive lacks
                  (every history file is staged, so PostgreSQL picks the next free number)
                  a failed replay: the attempt kept aside as `failed-attempt`, the originals back
    replicas      stopped, kept aside, cloned again from the rebuilt primary (pg_basebackup)
    maintenance   off once the router serves again; the report: stop point, RPO, RTO
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
    stop_lsn: str | None = None
    timeline: int | None = None
    note: str = ""


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


def recover(config, to_time: str | None = None, *, to_lsn: str | None = None, to_latest: bool = False,
            from_id: str = "latest", timeline: int | None = None, dry_run: bool = False, progress: Progress = None,
            manage_service: bool = True) -> RecoverResult | CreatePlan:
    """`manage_service` False (a runbook that already set maintenance and stopped the colors): only the
    database is rebuilt; maintenance and the colors are left to the runbook's own steps."""
    from ragops.db.bringup import live_primary
    from ragops.pg import pgctl
    from ragops.pitr.plan import plan_recovery
    from ragops.pitr.restore import parse_target
    from ragops.platforms import get_platform

    platform = get_platform(config)
    if not platform.owns_database_files or config.database.dsn:
        raise UsageError("db recover: rebuilds data directories ragops manages (platform: local); elsewhere use "
                         "`ragops backup physical restore --target-dir`")
    if config.database.ha != "manual":   # rebuilding a node under Patroni's feet would fight its leader election
        raise UsageError("db recover: Patroni manages the nodes (database.ha: patroni); restore with `ragops backup "
                         "physical restore --to-time T --target-dir DIR`, then `ragops down` and start from that "
                         "directory, or set database.ha: manual for the recovery")
    target = parse_target(to_time, to_lsn, to_latest)
    from ragops.pitr import recover_journal

    if not dry_run:
        recover_journal.refuse_unfinished(config, "db recover")
    primary = live_primary(config) or pgctl.managed_node(config, config.database.primary.name)
    if primary.running() and not dry_run:   # the switch belongs to the real run: a dry run changes nothing
        close_and_wait(config, primary, progress=progress)
    storage, _copy = storages(config)
    try:
        plan = plan_recovery(config, storage, target, backup_id=from_id, timeline=timeline, progress=progress)
    except OperationFailed as exc:
        if dry_run and "outside the archive's coverage" in exc.message:
            raise OperationFailed(f"{exc.message} (a dry run closes no WAL segment; the real run closes the "
                                  "current one first, so its coverage reaches now)") from None
        raise
    replicas = [pgctl.managed_node(config, r.name) for r in config.database.replicas if r.name != primary.name]
    try:
        if dry_run:
            return CreatePlan(True, [*plan.lines(),
                                     "(the real run first closes the current WAL segment, so the archive reaches now)",
                                     f"restore into {primary.data_dir.name}.recovering-<time> while the service runs",
                                     "maintenance on (the router answers 503)",
                                     f"stop {primary.name} and keep {primary.data_dir} aside as 'original'",
                                     "replay to the stop point, pause, check the reached LSN, promote",
                                     *[f"re-clone replica {r.name} (its data directory kept aside)" for r in replicas],
                                     "maintenance off; report RPO and RTO"])
        args = {"to_time": to_time, "to_lsn": to_lsn, "to_latest": to_latest, "from_id": from_id, "timeline": timeline}
        return _rebuild(config, platform, primary, replicas, plan, progress, manage_service, args)
    finally:
        plan.cleanup()


def _rebuild(config, platform, primary, replicas, plan, progress: Progress,
             manage_service: bool = True, args: dict | None = None) -> RecoverResult:
    from ragops.db.bringup import database_up
    from ragops.events import quiet
    from ragops.pitr import recover_journal as journal
    from ragops.pitr.archive import ensure_shipper
    from ragops.pitr.replay import lay_down, replay

    started = time.monotonic()
    storage, _copy = storages(config)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    staging = primary.data_dir.with_name(f"{primary.data_dir.name}.recovering-{stamp}")
    record = {"phase": "laying-down", "started": stamp, "target": plan.target.describe(), "args": args or {},
              "staging": str(staging), "wal_dir": str(plan.wal_dir), "aside": [], "manage_service": manage_service}
    journal.write(config, record)
    try:   # nothing is stopped yet: a failure here leaves the environment as it was
        lay_down(config, storage, plan, staging, archive=True, progress=progress)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        journal.finish(config)
        raise
    kept: list[tuple[object, str]] = []
    journal.write(config, {**record, "phase": "stopping"})
    if manage_service:
        say(progress, "maintenance on")
        platform.set_maintenance(True)
    for node in [*replicas, primary]:
        if node.running():
            say(progress, f"stopping {node.name}")
            node.stop()
        if node.initialized:
            aside = node.data_dir.with_name(f"{node.data_dir.name}.original-{stamp}")
            record["aside"].append([str(node.data_dir), str(aside)])
            journal.write(config, {**record, "phase": "stopping"})   # the intent, before the rename
            os.rename(node.data_dir, aside)
            kept.append((node, str(aside)))
    record["staging"] = None
    journal.write(config, {**record, "phase": "replaying"})
    os.rename(staging, primary.data_dir)
    try:
        result = replay(config, primary.data_dir, primary.port, progress, name=primary.name, plan=plan)[1]
    except OperationFailed as exc:
        raise OperationFailed(f"{exc.message}; {_put_back(config, platform, primary, kept, progress, manage_service)}") from None
    journal.write(config, {**record, "phase": "promoted"})
    say(progress, "re-cloning replicas from the rebuilt primary")
    try:
        database_up(config, progress or quiet)
    except OperationFailed as exc:   # seen on a loaded machine: a second pg_basebackup has worked
        say(progress, f"re-cloning failed ({exc.message}); once more")
        database_up(config, progress or quiet)
    ensure_shipper(platform, progress or quiet)
    if manage_service:
        finish_service(config, platform, progress)
    journal.finish(config)
    rto = round(time.monotonic() - started, 2)
    target = plan.target
    rpo = None
    if result and target.time:
        rpo = round((parse_iso(target.time) - parse_iso(result)).total_seconds(), 3)
    return RecoverResult(target.describe(), plan.base.id, result, rpo, rto, len(plan.segments),
                         [path for _node, path in kept], [r.name for r in replicas], plan.stop_lsn, plan.timeline,
                         plan.note)


def finish_service(config, platform, progress: Progress) -> None:
    """The colors ready, then maintenance off, then the router serving the readiness path (not before the
    colors: clients would get 'no available server' instead of the maintenance answer)."""
    from ragops.events import quiet
    from ragops.readiness import wait_ready

    for color in platform.was_live():
        wait_ready(platform, color, config.service.startup_timeout, progress or quiet)
    platform.set_maintenance(False)
    say(progress, "maintenance off")
    _wait_serving(platform, config.service.startup_timeout)


def _put_back(config, platform, primary, kept, progress: Progress, manage_service: bool) -> str:
    """After a failed replay: the attempt kept aside as `failed-attempt`, the originals back in place and
    started; maintenance off only once the database answers again."""
    from ragops.db.bringup import database_up
    from ragops.events import quiet
    from ragops.pitr.restore import set_aside

    try:
        primary.stop(mode="immediate")
    except OperationFailed:
        primary.kill9()
    failed = set_aside(primary.data_dir, "failed-attempt")
    for node, path in kept:
        os.rename(path, node.data_dir)
    from ragops.pitr import recover_journal

    recover_journal.finish(config)
    try:
        database_up(config, progress or quiet)
    except OperationFailed as exc:
        return (f"the attempt is kept at {failed}; the original data directories are back in place but did not "
                f"start ({exc.message}); maintenance stays on")
    if manage_service:
        platform.set_maintenance(False)
        say(progress, "maintenance off")
    return f"nothing was lost: the original data directories are back in place and running; the attempt is kept at {failed}"


def resume(config, progress: Progress = None):
    """Promoted already: clone the replicas, start the shipper, maintenance off. Earlier: abort, then the
    same recover again (the plan is resolved and checked anew)."""
    from ragops.pitr import recover_journal

    record = recover_journal.read(config)
    if record is None:
        raise UsageError("db recover --resume: no unfinished recover")
    if record.get("phase") == "promoted":
        from ragops.db.bringup import database_up
        from ragops.events import quiet
        from ragops.pitr.archive import ensure_shipper
        from ragops.platforms import get_platform

        platform = get_platform(config)
        steps = database_up(config, progress or quiet) + ensure_shipper(platform, progress or quiet)
        if record.get("manage_service", True):
            finish_service(config, platform, progress)
        recover_journal.finish(config)
        return steps + ["resumed: replicas cloned, maintenance off"]
    recover_journal.abort(config, progress)
    args = record.get("args") or {}
    return recover(config, args.get("to_time"), to_lsn=args.get("to_lsn"), to_latest=bool(args.get("to_latest")),
                   from_id=args.get("from_id") or "latest", timeline=args.get("timeline"), progress=progress,
                   manage_service=record.get("manage_service", True))


def _wait_serving(platform, timeout: float) -> None:
    """Until the router answers the readiness path with 200 (its health check saw the database come back)."""
    from ragops.smoke import wait_serving

    if not wait_serving(platform.router_url(), platform.config.service.readiness_path, timeout):
        url = platform.router_url().rstrip("/") + platform.config.service.readiness_path
        raise OperationFailed(f"the database is recovered but {url} does not answer 200 after {timeout:.0f}s")
