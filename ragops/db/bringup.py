"""Bringing the managed PostgreSQL nodes up and down: initdb, start, role and database, replicas
cloned with pg_basebackup, migrations on the current primary.

Used by platforms that own the database's data directories (local); idempotent like `ragops up`.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

from ragops.config import Config
from ragops.errors import ConfigError
from ragops.events import Say as Progress
from ragops.events import quiet as _noop

# `database.ha` -> the class that runs the nodes, imported on first use (the HA engine builds on this one)
DATABASE_MANAGERS: dict[str, str] = {
    "patroni": "ragops.ha.manager:PatroniDatabase",
}


def database_manager(config: Config):
    """Who runs the nodes, chosen by `database.ha`: None for ragops itself (manual), else the HA
    engine's manager (ragops/ha/manager.py: Patroni + etcd) with up/down/status/dead_components."""
    target = DATABASE_MANAGERS.get(config.database.ha or "")
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(config)


def spool_dir(config) -> Path:
    """Where archive_command puts finished segments: backups.wal.spool_dir, else the platform's
    (Platform.wal_spool_dir: docker's database containers write into <host dir>/wal-spool), else
    beside the server's data directories (as root, the server account's home), <...>/wal-spool."""
    configured = config.backups.wal.spool_dir
    if configured:
        path = config.resolve_path(configured)
    else:
        from ragops.pg.pgctl import server_home
        from ragops.platforms import platform_class

        path = platform_class(config).wal_spool_dir(config) or (server_home(config) or config.state_dir) / "wal-spool"
    if re.search(r"[\s'\"%;&|$`\\]", str(path)):
        raise ConfigError(f"backups.wal.spool_dir: {path} may not contain spaces, quotes or shell characters")
    return path


def database_up(config: Config, progress: Progress = _noop) -> list[str]:
    """Start (creating when missing) the primary, the replicas, the app role and database."""
    from ragops.db.connect import db_password

    manager = database_manager(config)
    if manager is not None:   # the HA engine starts the nodes, clones and promotes
        steps, leader = manager.up(progress)
        return steps + role_and_database(config, leader, db_password(config))
    return _manual_up(config, progress)


def _archive_at_initdb(config: Config) -> dict[str, str]:
    """The WAL archive settings written at initdb (ragops/pitr turns them on for an existing primary
    later), so a first `up` does not restart the primary just to set archive_mode."""
    if not config.backups.wal.enabled:
        return {}
    from ragops.pg import pgctl

    spool = spool_dir(config)
    pgctl.prepare_dir(spool)
    return pgctl.archive_settings(spool, config.backups.wal.archive_timeout)


def _manual_up(config: Config, progress: Progress) -> list[str]:
    from ragops.db.connect import db_password
    from ragops.pg import pgctl

    steps = []
    db = config.database
    password = db_password(config)
    pgctl.server_home(config, create=True)   # as root: record where the server account's files go
    primary = pgctl.managed_node(config, db.primary.name)
    if not primary.initialized:
        progress(f"initialising PostgreSQL primary {primary.name} (port {primary.port})")
        primary.init_primary(db.superuser, password, _archive_at_initdb(config))
        steps.append(f"initdb {primary.name}")
    for node in pgctl.managed_nodes(config):
        if node.initialized and not node.running():
            progress(f"starting database node {node.name} (port {node.port})")
            node.start()
            steps.append(f"start {node.name}")

    # whichever node is not in recovery is the primary now (it may have changed by a failover)
    current = live_primary(config) or primary
    steps += role_and_database(config, current.name, password)
    steps += _clone_replicas(config, current, password, progress)
    if db.synchronous and db.replicas:
        from ragops.db.standby import configure_sync

        configure_sync(config, progress)
    return steps


def role_and_database(config: Config, node_name: str, password: str) -> list[str]:
    from psycopg import sql

    from ragops.db.connect import connect, node_dsn

    steps = []
    db = config.database
    with connect(node_dsn(config, node_name, dbname="postgres")) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db.user,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(db.user),
                                                                             sql.Literal(password)))
            steps.append(f"create role {db.user}")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db.name),
                                                                       sql.Identifier(db.user)))
            steps.append(f"create database {db.name}")
    return steps


def _clone_replicas(config: Config, current, password: str, progress: Progress) -> list[str]:
    from ragops.db.connect import connect, node_dsn
    from ragops.db.replication import slot_name
    from ragops.pg import pgctl

    steps = []
    db = config.database
    for replica in db.replicas:
        node = pgctl.managed_node(config, replica.name)
        if node.initialized:
            continue
        progress(f"cloning replica {node.name} from {current.name} (pg_basebackup)")
        slot = slot_name(node.name)
        with connect(node_dsn(config, current.name, dbname="postgres")) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND NOT active", (slot,))
        node.clone_from(current, db.superuser, password, slot)
        _set_application_name(node, node.name)
        node.start()
        steps.append(f"clone {node.name}")
    return steps


def _set_application_name(node, name: str) -> None:
    """Name the replica's walreceiver after the node, so synchronous_standby_names can list it."""
    from ragops.pg.pgctl import write_server_file

    auto = node.data_dir / "postgresql.auto.conf"
    text = auto.read_text()
    text = text.replace("primary_conninfo = '", f"primary_conninfo = 'application_name={name} ", 1)
    write_server_file(auto, text)


def live_primary(config: Config):
    """The managed node accepting writes now (it may have changed by a failover), or None."""
    from ragops.db.replication import primary_status, topology
    from ragops.pg import pgctl

    live = primary_status(topology(config))
    return pgctl.managed_node(config, live.name) if live else None


def migrate(config: Config, progress: Progress = _noop) -> list[str]:
    """Apply the service's pending migrations on the current primary (the configured one if none answers)."""
    from ragops.db.connect import node_dsn
    from ragops.pg.migrate import apply_migrations

    migrations = config.resolve_path(config.service.path) / "migrations"
    manager = database_manager(config)
    if manager is not None:   # the HA engine's writer address (Patroni: its leader-aware endpoint) only
        return apply_migrations(manager.writer_dsn(), migrations, app_user=config.database.user, progress=progress)
    current = live_primary(config)
    node_name = current.name if current else config.database.primary.name
    return apply_migrations(node_dsn(config, node_name), migrations, app_user=config.database.user,
                            progress=progress)


def database_down(config: Config, progress: Progress = _noop) -> list[str]:
    """Stop every running managed node, replicas first (data kept)."""
    from ragops.pg import pgctl

    manager = database_manager(config)
    if manager is not None:
        return manager.down(progress)
    steps = []
    for node in reversed(pgctl.managed_nodes(config)):
        if node.running():
            progress(f"stopping database node {node.name}")
            node.stop()
            steps.append(f"stop {node.name}")
    return steps
