"""`ragops backup physical ...` and `ragops backup wal ...`: point-in-time recovery (ragops/pitr)."""
from __future__ import annotations

import typer

physical_app = typer.Typer(help="Physical base backups and point-in-time restore (pg_basebackup + the WAL archive).",
                           no_args_is_help=True)
wal_app = typer.Typer(help="The continuous WAL archive: health check, shipping.", no_args_is_help=True)


def register(backup_app: typer.Typer) -> None:
    if any(group.typer_instance is physical_app for group in backup_app.registered_groups):
        return   # main() registers the command modules on every call
    backup_app.add_typer(physical_app, name="physical")
    backup_app.add_typer(wal_app, name="wal")


def register_db(db_app: typer.Typer) -> None:
    if any(command.name == "recover" for command in db_app.registered_commands):
        return
    db_app.command("recover")(recover)


def recover(ctx: typer.Context,
            to_time: str = typer.Option(..., "--to-time", help="ISO 8601 with a zone: the moment before the damage."),
            dry_run: bool = typer.Option(False, "--dry-run", help="The coverage check and the plan; change nothing.")) -> None:
    """Rebuild the environment's database as it was at a moment (local): maintenance on, primary kept aside
    and restored from the archive, replicas re-cloned, maintenance off; reports RPO and RTO.

    Example: ragops db recover --to-time 2026-11-29T18:40:00Z --yes
    """
    env = ctx.obj
    from ragops.pitr.recover import recover as run_recover

    if not dry_run:
        env.confirm(f"Rebuild the database as of {to_time} (the service answers 503 meanwhile; the current data "
                    "directories are kept aside)?")
    if dry_run:
        result = run_recover(env.config, to_time, dry_run=True, progress=env.progress("recover"))
    else:
        from ragops.deploy.oplock import operation

        with operation(env.config, "ragops db recover", past_dormant=True, progress=env.progress("recover")):
            result = run_recover(env.config, to_time, dry_run=False, progress=env.progress("recover"))
    if dry_run:
        env.emit(result, _steps)
        return
    env.emit(result, lambda r: (f"recovered to {r.target} from {r.base_backup} ({r.segments} WAL segments): last "
                                f"transaction {r.recovered_to or '-'}, RPO {r.rpo_seconds}s, RTO {r.rto_seconds}s; "
                                f"kept aside: {', '.join(r.kept_aside) or '-'}"))


def _steps(plan) -> str:
    return "would:\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(plan.steps, 1))


@physical_app.command("create")
def create(ctx: typer.Context,
           label: str | None = typer.Option(None, "--label", help="A label kept in the manifest."),
           incremental: bool = typer.Option(False, "--incremental", help="Only the files changed since the newest "
                                            "base backup; restores apply the chain (local platform)."),
           dry_run: bool = typer.Option(False, "--dry-run", help="Print the steps; change nothing.")) -> None:
    """Stream a physical base backup (pg_basebackup -Ft, WAL fetched) through zstd and age into the storage.

    Example: ragops backup physical create --label nightly

    Example: ragops backup physical create --incremental   (hourly: the changed files since the newest one)
    """
    env = ctx.obj
    from ragops.backup.pipeline import size_text
    from ragops.pitr.basebackup import create_physical

    result = create_physical(env.config, label=label, dry_run=dry_run, incremental=incremental,
                             progress=env.progress("backup"))
    if dry_run:
        env.emit(result, _steps)
        return

    def line(m) -> str:
        incr = m.physical.get("incremental")
        what = (f"incremental backup {m.id} ({incr['changed_files']} changed files, chain "
                f"{' -> '.join([*incr['chain'], m.id])})" if incr else f"base backup {m.id}")
        return (f"{what}: {size_text(m.raw_bytes)} read, {size_text(m.stored_bytes)} stored, "
                f"{m.physical['start_lsn']}..{m.physical['stop_lsn']} on timeline {m.physical['timeline']}, "
                f"{m.duration_seconds:.1f}s")

    env.emit(result, line)


@physical_app.command("restore")
def restore(ctx: typer.Context, backup_id: str = typer.Argument("latest", metavar="ID|latest"),
            to_time: str | None = typer.Option(None, "--to-time", help="ISO 8601 with a zone: replay up to here."),
            to_lsn: str | None = typer.Option(None, "--to-lsn", help="Replay up to this LSN (like 0/3000028)."),
            to_latest: bool = typer.Option(False, "--to-latest", help="Replay everything the archive holds."),
            target_dir: str = typer.Option(..., "--target-dir", help="A new (or empty) data directory."),
            port: int | None = typer.Option(None, "--port", help="Loopback port for the replay (default: a free one)."),
            keep_running: bool = typer.Option(False, "--keep-running", help="Leave the restored server running."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Run the checks, print the plan; write nothing.")) -> None:
    """Rebuild a data directory at a moment: base backup + verified WAL, replayed and promoted.

    Refuses a target outside the archive's coverage (naming what is covered), a missing or damaged
    WAL segment (naming it) and a wrong key, before anything is written.

    Example: ragops backup physical restore --to-time 2026-11-29T18:40:00Z --target-dir /srv/pg-restored
    """
    env = ctx.obj
    from ragops.pitr.restore import parse_target, restore_physical

    target = parse_target(to_time, to_lsn, to_latest)
    result = restore_physical(env.config, backup_id, target, target_dir, port=port, keep_running=keep_running,
                              progress=env.progress("restore"), dry_run=dry_run)
    if dry_run:
        env.emit(result, _steps)
        return
    env.emit(result, lambda r: (f"restored {r.backup_id} into {r.target_dir} to {r.target}: {r.segments} WAL "
                                f"segment(s), last transaction {r.recovered_to or 'none replayed'}"
                                + (f", RPO {r.rpo_seconds:.1f}s" if r.rpo_seconds is not None else "")
                                + f", {r.seconds:.1f}s" + (f"; running on 127.0.0.1:{r.port}" if r.running else "")))


@physical_app.command("verify")
def verify(ctx: typer.Context, backup_id: str = typer.Argument("latest", metavar="ID|latest"),
           to_time: str | None = typer.Option(None, "--to-time", help="Replay only up to here (default: all WAL).")) -> None:
    """Prove a recovery point: restore into a scratch instance, replay, run the sanity checks and row counts,
    record the result next to the manifest, remove the scratch instance. Exit 3 when a check fails.

    Example: ragops backup physical verify latest --to-time 2026-11-29T18:40:00Z
    """
    env = ctx.obj
    from ragops.errors import GateFailed
    from ragops.pitr.verify import verify_physical

    result = verify_physical(env.config, backup_id, to_time=to_time, progress=env.progress("verify"))
    env.emit(result, lambda r: "\n".join([f"backup {r.backup_id}: {'ok' if r.ok else 'FAILED'}"]
                                         + [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in r.checks]))
    if not result.ok:
        raise GateFailed(f"backup {result.backup_id} failed verification: {result.failure}")


@wal_app.command("check")
def check(ctx: typer.Context,
          metrics_file: str | None = typer.Option(None, "--metrics-file", help="Write Prometheus textfile metrics.")) -> None:
    """Archive health: newest segment age, gaps, oldest recoverable time. Exit 3 on lag > backups.max_wal_lag or a gap.

    Example: ragops backup wal check --metrics-file /var/lib/node_exporter/ragops_wal.prom
    """
    env = ctx.obj
    from ragops.pitr.coverage import check_archive

    result = check_archive(env.config, metrics_file=metrics_file)
    env.emit(result, lambda r: (f"WAL archive ok: {r.segments} segment(s), newest {r.newest_segment} "
                                f"{r.newest_age_seconds}s old, no gap, oldest recoverable time "
                                f"{r.oldest_recoverable_time or '- (no physical base backup)'}"))


@wal_app.command("ship")
def ship(ctx: typer.Context) -> None:
    """Ship every finished segment waiting in the spool now (what the shipper process does continuously).

    Example: ragops backup wal ship
    """
    env = ctx.obj
    from ragops.errors import OperationFailed
    from ragops.pitr.wal import Shipper

    result = Shipper(env.config, progress=env.progress("wal")).ship_once()
    env.emit(result, lambda r: f"shipped {len(r.shipped)} file(s)")
    if result.failed:
        name, error = next(iter(result.failed.items()))
        raise OperationFailed(f"WAL segment {name} stays in the spool: {error}")
