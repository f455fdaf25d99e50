"""`ragops backup ...`: thin commands over ragops.backup (parse, confirm, call, render)."""
from __future__ import annotations

import typer

app = typer.Typer(help="PostgreSQL backups (logical and physical), the WAL archive, point-in-time restore.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="backup")
    from ragops.cli.pitr import register as register_pitr  # backup physical / backup wal (ragops/pitr)

    register_pitr(app)


def _size(n) -> str:
    from ragops.backup.pipeline import size_text as size

    return size(n) if n is not None else "-"


def _age(seconds) -> str:
    from ragops.durations import format_duration

    return format_duration(seconds) if seconds is not None else "-"


@app.command("create")
def create(ctx: typer.Context,
           label: str | None = typer.Option(None, "--label", help="A label kept in the manifest."),
           physical: bool = typer.Option(False, "--physical", help="A physical base backup for point-in-time "
                                         "recovery (same as `backup physical create`)."),
           incremental: bool = typer.Option(False, "--incremental", help="With --physical: only the files changed "
                                            "since the newest base backup (local platform)."),
           dry_run: bool = typer.Option(False, "--dry-run", help="Print the steps; change nothing.")) -> None:
    """Take a streamed, compressed, encrypted backup of the environment's primary (logical: pg_dump).

    Example: ragops -e production backup create --label pre-deploy

    Example: ragops backup create --physical --incremental   (the guide's hourly incremental)
    """
    env = ctx.obj
    if physical:
        from ragops.cli.pitr import create as physical_create

        return physical_create(ctx, label=label, incremental=incremental, dry_run=dry_run)
    if incremental:
        from ragops.errors import UsageError

        raise UsageError("--incremental is for physical base backups: ragops backup create --physical --incremental")
    from ragops.backup.create import create_backup

    result = create_backup(env.config, label=label, dry_run=dry_run, progress=env.progress("backup"))
    if dry_run:
        env.emit(result, lambda r: "would:\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(r.steps, 1)))
    else:
        env.emit(result, lambda m: f"backup {m.id}: {_size(m.raw_bytes)} dumped, {_size(m.stored_bytes)} stored, "
                                   f"sha256 {m.sha256[:16]}..., {m.duration_seconds:.1f}s")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List backups (only those with a manifest): kind (logical or physical), age, size, verified or not.

    Example: ragops backup list --output json
    """
    env = ctx.obj
    from ragops.backup.catalog import list_backups

    items = list_backups(env.config)

    def render(rows):
        if not rows:
            return "no backups"
        lines = [f"{'ID':<22} {'KIND':<11} {'AGE':>7} {'STORED':>10} {'VERIFIED':<16} LABEL"]
        for r in rows:
            verified = {None: "no", True: "yes", False: "FAILED"}[r.verified]
            if r.restore_tested:
                verified += " (restore)"
            lines.append(f"{r.id:<22} {r.kind:<11} {_age(r.age_seconds):>7} "
                         f"{_size(r.stored_bytes):>10} {verified:<16} {r.label or ''}")
        return "\n".join(lines)

    env.emit({"backups": items} if env.json else items, render)


@app.command("show")
def show(ctx: typer.Context, backup_id: str = typer.Argument(..., metavar="ID|latest")) -> None:
    """Show a backup's manifest and its latest verification.

    Example: ragops backup show latest
    """
    env = ctx.obj
    from ragops.backup.catalog import show_backup

    env.emit(show_backup(env.config, backup_id), None)


@app.command("verify")
def verify(ctx: typer.Context, backup_id: str = typer.Argument("latest", metavar="ID|latest"),
           restore: bool = typer.Option(False, "--restore", help="Also restore into a scratch database and check the data."),
           physical: bool = typer.Option(False, "--physical", help="Verify a physical base backup by replaying it "
                                         "in a scratch instance (same as `backup physical verify`)."),
           to_time: str | None = typer.Option(None, "--to-time", help="With --physical: replay only up to here.")) -> None:
    """Check a backup's digest (every copy); with --restore, a test restore and data checks.

    Exit 3 when a check fails.

    Example: ragops backup verify latest --restore
    """
    env = ctx.obj
    if physical:
        from ragops.cli.pitr import verify as physical_verify

        return physical_verify(ctx, backup_id=backup_id, to_time=to_time)
    if to_time:
        from ragops.errors import UsageError

        raise UsageError("--to-time needs --physical (a logical backup is restored as a whole)")
    from ragops.backup.verify import verify_backup
    from ragops.errors import GateFailed

    result = verify_backup(env.config, backup_id, restore=restore, progress=env.progress("verify"))
    env.emit(result, lambda r: "\n".join([f"backup {r.backup_id}: {'ok' if r.ok else 'FAILED'}"]
                                         + [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in r.checks]))
    if not result.ok:
        raise GateFailed(f"backup {result.backup_id} failed verification: {result.failure}")


@app.command("restore")
def restore(ctx: typer.Context, backup_id: str = typer.Argument("latest", metavar="ID|latest"),
            target: str | None = typer.Option(None, "--target", help="Target conninfo or postgresql:// URL."),
            to_env: str | None = typer.Option(None, "--to-env", help="Restore into this environment's primary."),
            clean: bool = typer.Option(False, "--clean", help="Drop objects before recreating them."),
            create: bool = typer.Option(False, "--create", help="Create the database named in the dump."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Check digest and key, print the plan; touch nothing.")) -> None:
    """Restore a backup (destructive: asks on a terminal, needs --yes elsewhere).

    Refuses a wrong key or a digest mismatch before touching the target.
    Example: ragops backup restore latest --target "host=127.0.0.1 port=5432 dbname=rag_restore user=postgres" --yes
    """
    env = ctx.obj
    from ragops.backup.pg import describe, params_from_dsn
    from ragops.backup.restore import restore_backup
    from ragops.errors import UsageError

    if bool(target) == bool(to_env):
        raise UsageError("give exactly one of --target DSN or --to-env ENV")
    where = describe(params_from_dsn(target)) if target else f"environment {to_env}"
    if dry_run:
        plan = restore_backup(env.config, backup_id, target_dsn=target, to_env=to_env, clean=clean, create=create,
                              progress=env.progress("restore"), dry_run=True)
        env.emit(plan, lambda r: "\n".join(r.steps))
        return
    env.confirm(f"Restore backup {backup_id} into {where}{' (--clean drops existing objects)' if clean else ''}?")
    from ragops.deploy.oplock import operation

    with operation(env.config, "ragops backup restore", past_dormant=True, progress=env.progress("restore")):
        result = restore_backup(env.config, backup_id, target_dsn=target, to_env=to_env, clean=clean, create=create,
                                progress=env.progress("restore"))
    env.emit(result, lambda r: f"restored {r.backup_id} into {r.target}: {_size(r.stored_bytes)} in "
                               f"{r.elapsed_seconds:.1f}s ({_size(r.rate_bytes_per_second)}/s)")


@app.command("prune")
def prune(ctx: typer.Context) -> None:
    """Apply retention and remove orphans; a dry run unless --yes.

    Example: ragops backup prune --yes
    """
    env = ctx.obj
    from ragops.backup.retention import prune_backups

    result = prune_backups(env.config, apply=env.yes, progress=env.progress("prune"))

    def render(plan):
        verb = "deleted" if plan.applied else "would delete"
        lines = [f"{verb}: {a.kind} {a.target} ({a.storage}): {a.reason}" for a in plan.delete]
        lines += [f"keep: {i} ({', '.join(r)})" for i, r in sorted(plan.keep.items())]
        lines += [f"skipped: {s}" for s in plan.skipped]
        if not plan.applied and plan.delete:
            lines.append("dry run: run with --yes to delete")
        return "\n".join(lines) or "nothing to prune"

    env.emit(result, render)


@app.command("check")
def check(ctx: typer.Context,
          max_age: str = typer.Option("26h", "--max-age", help="Maximum age of the newest good backup."),
          metrics_file: str | None = typer.Option(None, "--metrics-file", help="Write Prometheus textfile metrics here.")) -> None:
    """Exit 3 when the newest good backup is older than --max-age.

    Example: ragops backup check --max-age 26h --metrics-file /var/lib/node_exporter/ragops_backup.prom
    """
    env = ctx.obj
    from ragops.backup.metrics import check_backups
    from ragops.durations import parse_duration
    from ragops.errors import UsageError

    try:
        seconds = parse_duration(max_age)
    except ValueError as exc:
        raise UsageError(f"--max-age: {exc}") from None
    result = check_backups(env.config, seconds, metrics_file=metrics_file)
    env.emit(result, lambda r: f"ok: newest good backup {r.newest_id} is {_age(r.age_seconds)} old "
                               f"(max {_age(r.max_age_seconds)})")


@app.command("lifecycle")
def lifecycle(ctx: typer.Context) -> None:
    """Apply backups.lifecycle as S3 lifecycle rules (storage tiering); a plan unless --yes.

    Example: ragops -e production backup lifecycle --yes
    """
    env = ctx.obj
    from ragops.backup.lifecycle import apply_lifecycle

    result = apply_lifecycle(env.config, apply=env.yes)

    def render(plan):
        lines = []
        for s in plan.storages:
            lines.append(f"{s['storage']}: add {s['add'] or '-'}, change {s['change'] or '-'}, "
                         f"unchanged {s['unchanged'] or '-'}, other rules kept {s['keep_foreign'] or '-'}")
        if not plan.applied:
            lines.append("plan only: run with --yes to apply")
        return "\n".join(lines)

    env.emit(result, render)
