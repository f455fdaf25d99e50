"""Backups: create, verify, restore, show and the freshness check."""
from __future__ import annotations

from typing import Any

from ragops.backup import catalog, create, metrics, restore, verify
from ragops.errors import GateFailed
from ragops.runbook.operations.common import duration, flag, to_outputs, with_outputs
from ragops.runbook.operations.registry import Context, operation


@operation("backup.create")
def backup_create(ctx: Context, *, label: str | None = None) -> dict:
    """Take a backup of the primary."""
    return to_outputs(create.create_backup(ctx.require_config(), label=label, progress=ctx.progress))


@operation("backup.verify", gate=True)
def backup_verify(ctx: Context, *, backup_id: str | None = None, restore: Any = False) -> dict:
    """Verify a backup (checksums; with restore: a test restore)."""
    result = verify.verify_backup(ctx.require_config(), backup_id=str(backup_id or "latest"),
                                     restore=flag(restore), progress=ctx.progress)
    outputs = to_outputs(result)
    if not outputs.get("ok", True):
        failure = getattr(result, "failure", None) or "verification failed"
        raise with_outputs(GateFailed(f"backup {outputs.get('backup_id')}: {failure}"), outputs)
    return outputs


@operation("backup.restore")
def backup_restore(ctx: Context, *, backup_id: str | None = None, target_dsn: str | None = None,
                   target_db: str | None = None, node: str | None = None, clean: Any = False,
                   create: Any = False) -> dict:
    """Restore a backup.

    target_db: restore into this database on the primary instead (a scratch database);
    target_dsn: any conninfo; default: the environment's own database on the primary.
    """
    config = ctx.require_config()
    if not target_dsn:
        from ragops.db.roles import role_dsn

        target_dsn = role_dsn(config, node or None, dbname=str(target_db or config.database.name))
    return to_outputs(restore.restore_backup(config, backup_id=str(backup_id or "latest"), target_dsn=target_dsn,
                                               clean=flag(clean), create=flag(create), progress=ctx.progress))


@operation("backup.show")
def backup_show(ctx: Context, *, backup_id: str | None = None, kind: str | None = None) -> dict:
    """A backup's manifest (row counts per table, finish time) and verification record.
    kind: logical or physical, for `latest` (the newest of that kind)."""
    outputs = to_outputs(catalog.show_backup(ctx.require_config(), str(backup_id or "latest"), kind=kind or None))
    manifest = outputs.get("manifest") or {}
    outputs.update({"id": manifest.get("id"), "row_counts": manifest.get("row_counts") or {},
                    "finished_at": manifest.get("finished_at")})
    return outputs


@operation("backup.check", gate=True)
def backup_check(ctx: Context, *, max_age: Any = None, metrics_file: str | None = None) -> dict:
    """Check the latest backup is fresh and good; a gate. max_age: default 26h."""
    result = metrics.check_backups(ctx.require_config(), duration(max_age, "max_age", 26 * 3600.0),
                                     metrics_file=metrics_file)
    outputs = to_outputs(result)
    for key in ("ok", "passed", "fresh", "healthy"):
        if key in outputs and not outputs[key]:
            message = outputs.get("message") or outputs.get("problems") or "check failed"
            raise with_outputs(GateFailed(f"backups: {message}"), outputs)
    return outputs
