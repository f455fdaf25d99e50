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
    db_app.command("kept")(kept)


def kept(ctx: typer.Context,
         remove: str | None = typer.Option(None, "--remove", metavar="ID", help="Delete this kept-aside directory.")) -> None:
    """Data directories `db recover` kept aside: `original` (before a recover), `failed-attempt` (what a failed
    one wrote), `recovering` (a killed one's extraction); size, age, whether a server ever started on it.

    Example: ragops db kept -o json

    Example: ragops db kept --remove primary.failed-attempt-20261207T111500Z --yes
    """
    env = ctx.obj
    from ragops.backup.pipeline import size_text
    from ragops.pitr import kept as kept_engine

    if remove:
        env.confirm(f"Delete the kept-aside data directory {remove}?")
        gone = kept_engine.remove(env.config, remove)
        env.emit(gone, lambda k: f"deleted {k.path} ({size_text(k.bytes)})")
        return
    found = kept_engine.kept(env.config)
    env.emit({"kept": found, "total_bytes": sum(k.bytes for k in found)},
             lambda d: "\n".join([f"{k.id}: {k.kind} ({k.holds}), {size_text(k.bytes)}, {k.age_seconds / 3600:.1f} h old"
                                  f"{', started' if k.started else ''}"
                                  f"{', NEEDED by the unfinished recover' if k.needed_by_unfinished_recover else ''}"
                                  for k in d["kept"]] + [f"total {size_text(d['total_bytes'])} in {len(d['kept'])}"]))


def recover(ctx: typer.Context,
            to_time: str | None = typer.Option(None, "--to-time", help="ISO 8601 with a zone: the moment before the "
                                               "damage (recovers to the last commit at or before it)."),
            to_lsn: str | None = typer.Option(None, "--to-lsn", help="Replay up to the record at this LSN."),
            to_latest: bool = typer.Option(False, "--to-latest", help="Replay everything the archive holds."),
            from_id: str = typer.Option("latest", "--from", metavar="BACKUP_ID",
                                        help="The base backup to start from (default: the newest on the path)."),
            timeline: int | None = typer.Option(None, "--timeline", min=1,
                                                help="Recover along this timeline (default: the archive's newest)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Print the checked plan; change nothing "
                                         "(not even a WAL switch)."),
            resume: bool = typer.Option(False, "--resume", help="Finish an interrupted recover (killed, Ctrl-C)."),
            abort: bool = typer.Option(False, "--abort", help="Put the original data directories of an interrupted "
                                       "recover back and start them.")) -> None:
    """Rebuild the environment's database as it was at a moment (local): the whole plan resolved and every
    object checked first, then maintenance on, primary kept aside and restored from the archive, replayed
    to the plan's stop point, checked, promoted, replicas re-cloned, maintenance off; reports RPO and RTO.
    A replay that fails puts the original data directories back.

    Example: ragops db recover --to-time 2026-11-29T18:40:00Z --dry-run

    Example: ragops db recover --to-time 2026-11-29T18:40:00Z --from 20261129T120000Z --timeline 2 --yes

    Example: ragops db recover --abort --yes   (after a killed recover: the originals back in place)
    """
    env = ctx.obj
    from ragops.pitr.recover import recover as run_recover
    from ragops.pitr.restore import parse_target

    if resume or abort:
        _resume_or_abort(env, resume, abort, any((to_time, to_lsn, to_latest, dry_run)))
        return
    target = parse_target(to_time, to_lsn, to_latest)   # a bad value is refused before the question
    if not dry_run:
        env.confirm(f"Rebuild the database as of {target.describe()} (the service answers 503 meanwhile; the "
                    "current data directories are kept aside)?")
    if dry_run:
        result = run_recover(env.config, to_time, to_lsn=to_lsn, to_latest=to_latest, from_id=from_id,
                             timeline=timeline, dry_run=True, progress=env.progress("recover"))
    else:
        from ragops.deploy.oplock import operation

        with operation(env.config, "ragops db recover", past_dormant=True, progress=env.progress("recover")):
            result = run_recover(env.config, to_time, to_lsn=to_lsn, to_latest=to_latest, from_id=from_id,
                                 timeline=timeline, dry_run=False, progress=env.progress("recover"))
    if dry_run:
        env.emit(result, _steps)
        return
    env.emit(result, lambda r: (f"recovered to {r.target} from {r.base_backup} ({r.segments} WAL segments, stop LSN "
                                f"{r.stop_lsn or 'the base end'}, timeline path to {r.timeline}): last transaction "
                                f"{r.recovered_to or '-'}, RPO {r.rpo_seconds}s, RTO {r.rto_seconds}s; "
                                f"kept aside: {', '.join(r.kept_aside) or '-'}" + (f"\n{r.note}" if r.note else "")))


def _resume_or_abort(env, resume: bool, abort: bool, other: bool) -> None:
    from ragops.errors import UsageError
    from ragops.pitr import recover_journal

    if (resume and abort) or other:
        raise UsageError("db recover: --resume and --abort take no target and exclude each other")
    env.confirm("Finish the interrupted recover?" if resume else
                "Put the original data directories back (the attempt is kept aside as failed-attempt)?")
    from ragops.deploy.oplock import operation
    from ragops.pitr.recover import resume as resume_recover

    command = "ragops db recover --resume" if resume else "ragops db recover --abort"
    with operation(env.config, command, past_dormant=True, progress=env.progress("recover")):
        if abort:
            steps = recover_journal.abort(env.config, env.progress("recover"))
        else:
            result = resume_recover(env.config, env.progress("recover"))
    if abort:
        env.emit({"aborted": True, "steps": steps}, lambda d: "\n".join(["recover aborted:", *d["steps"]]))
        return
    env.emit(result, lambda r: "\n".join(r) if isinstance(r, list) else f"recovered to {r.target}: last transaction "
             f"{r.recovered_to or '-'}, RTO {r.rto_seconds}s")


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
            timeline: int | None = typer.Option(None, "--timeline", min=1,
                                                help="Recover along this timeline (default: the archive's newest)."),
            keep_running: bool = typer.Option(False, "--keep-running", help="Leave the restored server running."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Run the checks, print the plan; write nothing.")) -> None:
    """Rebuild a data directory at a moment: base backup + verified WAL, replayed and promoted.

    The whole plan first (timeline path, base, every segment fetched, digest-checked and read by
    pg_waldump, the last commit at or before the target): a target outside the coverage, a missing or
    damaged object, a wrong key, a used --port or a bad --target-dir is refused before anything is
    written. The copy never archives, not even when started again by hand.

    Example: ragops backup physical restore --to-time 2026-11-29T18:40:00Z --target-dir /srv/pg-restored
    """
    env = ctx.obj
    from ragops.pitr.restore import parse_target, restore_physical

    target = parse_target(to_time, to_lsn, to_latest)
    result = restore_physical(env.config, backup_id, target, target_dir, port=port, keep_running=keep_running,
                              progress=env.progress("restore"), dry_run=dry_run, timeline=timeline)
    if dry_run:
        env.emit(result, _steps)
        return
    env.emit(result, lambda r: (f"restored {r.backup_id} into {r.target_dir} to {r.target}: {r.segments} WAL "
                                f"segment(s), stop LSN {r.stop_lsn or 'the base end'} on timeline {r.timeline}, "
                                f"last transaction {r.recovered_to or 'none replayed'}"
                                + (f", RPO {r.rpo_seconds:.1f}s" if r.rpo_seconds is not None else "")
                                + f", {r.seconds:.1f}s" + (f"; running on 127.0.0.1:{r.port}" if r.running else "")
                                + (f"\n{r.note}" if r.note else "")))


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
