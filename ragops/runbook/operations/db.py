"""The database: promote a replica, apply migrations, read the topology."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ragops.db import connect as db_connect
from ragops.db import replication
from ragops.pg import migrate as db_migrate
from ragops.runbook.operations.common import flag, optional_int, to_outputs
from ragops.runbook.operations.registry import Context, operation


@operation("db.promote")
def db_promote(ctx: Context, *, node: str, max_lag: Any = None, force: Any = False, confirm_down: Any = False) -> dict:
    """Promote a replica."""
    return to_outputs(replication.promote(ctx.require_config(), str(node), max_lag=optional_int(max_lag),
                                          force=flag(force), confirm_down=flag(confirm_down),
                                          progress=ctx.progress))


@operation("db.migrate")
def db_migrate_(ctx: Context, *, dsn: str | None = None, node: str | None = None, dbname: str | None = None,
                migrations_dir: str | None = None, app_user: str | None = None) -> dict:
    """Apply the service's migrations.

    migrations_dir: default <service.path>/migrations, else the bundled service's.
    """
    config = ctx.config
    if not dsn:
        dsn = db_connect.node_dsn(ctx.require_config(), node, dbname=dbname)
    if not migrations_dir and config is not None:
        candidate = config.resolve_path(config.service.path) / "migrations"
        if candidate.is_dir():
            migrations_dir = str(candidate)
    if not migrations_dir:
        migrations_dir = str(db_migrate.default_migrations_dir())
    applied = db_migrate.apply_migrations(dsn, Path(migrations_dir), app_user=app_user or None,
                                          progress=ctx.progress)
    return {"applied": list(applied or []), "count": len(applied or []), "migrations_dir": str(migrations_dir)}


@operation("db.topology")
def db_topology(ctx: Context) -> dict:
    """Every database node: role, reachability, replication lag."""
    nodes = [to_outputs(s) for s in replication.topology(ctx.require_config())]
    primaries = [n["name"] for n in nodes if n.get("role") == "primary" and not n.get("fenced")]
    return {"nodes": nodes, "primary": primaries[0] if primaries else None,
            "max_lag_bytes": max([n.get("lag_bytes") or 0 for n in nodes] + [0]),
            "max_lag_seconds": max([n.get("lag_seconds") or 0 for n in nodes] + [0])}
