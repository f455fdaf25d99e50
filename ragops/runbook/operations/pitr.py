"""Point-in-time recovery: the database back to the moment before the damage (ragops/pitr)."""
from __future__ import annotations

from typing import Any

from ragops.runbook.operations.common import flag, to_outputs
from ragops.runbook.operations.registry import Context, operation


@operation("db.recover")
def db_recover(ctx: Context, *, to_time: str, manage_service: Any = True) -> dict:
    """Rebuild the database as it was at `to_time` (local platform: base backup + archived WAL, replicas
    re-cloned). manage_service false: maintenance and the colors are the runbook's own steps."""
    from ragops.pitr.recover import recover

    return to_outputs(recover(ctx.require_config(), str(to_time), manage_service=flag(manage_service, True),
                              progress=ctx.progress))


@operation("db.restore_point")
def db_restore_point(ctx: Context, *, damage_began: str | None = None, backup_id: str | None = None) -> dict:
    """The database-corruption restore: with `damage_began` (ISO 8601), a point-in-time recovery to just
    before it; without, the logical backup `backup_id` restored with --clean --create. Outputs the row
    counts to expect afterwards (the logical manifest's, or those the recovered database holds)."""
    config = ctx.require_config()
    if damage_began:
        from ragops.backup.pg import connect, row_counts, source_params
        from ragops.pitr.recover import recover

        outputs = to_outputs(recover(config, str(damage_began), manage_service=False, progress=ctx.progress))
        with connect(source_params(config)) as conn, conn.cursor() as cur:
            outputs["row_counts"] = row_counts(cur, config.backups.tables)
        outputs["mode"] = "point-in-time"
        return outputs
    from ragops.backup import catalog, restore
    from ragops.db import connect as db_connect

    manifest = catalog.show_backup(config, str(backup_id or "latest"))["manifest"]
    target = db_connect.node_dsn(config, None, dbname=config.database.name)
    outputs = to_outputs(restore.restore_backup(config, backup_id=manifest["id"], target_dsn=target, clean=True,
                                                create=True, progress=ctx.progress))
    outputs.update({"row_counts": manifest.get("row_counts") or {}, "mode": "logical"})
    return outputs


@operation("backup.physical_create")
def backup_physical_create(ctx: Context, *, label: str | None = None) -> dict:
    """A physical base backup of the primary (pg_basebackup through the backup pipeline)."""
    from ragops.pitr.basebackup import create_physical

    return to_outputs(create_physical(ctx.require_config(), label=label, progress=ctx.progress))
