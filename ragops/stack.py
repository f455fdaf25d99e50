"""`up`, `down` and `status` for an environment: database nodes, router, first color.

Every step is idempotent: `up` on a running stack checks each piece and changes nothing.
"""
from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field

from ragops.config import Config
from ragops.errors import OperationFailed
from ragops.platforms import get_platform
from ragops.platforms.base import Progress


def _noop(_: str) -> None:
    pass


@dataclass
class UpResult:
    environment: str
    router: str
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


def database_up(config: Config, progress: Progress = _noop) -> list[str]:
    """Start (creating when missing) the primary, the replicas, the app role and database."""
    from ragops.db import pgctl
    from ragops.db.connect import connect, db_password, node_dsn

    steps = []
    db = config.database
    password = db_password(config)
    primary = pgctl.managed_node(config, db.primary.name)
    if not primary.initialized:
        progress(f"initialising PostgreSQL primary {primary.name} (port {primary.port})")
        primary.init_primary(db.superuser, password)
        steps.append(f"initdb {primary.name}")
    for node in pgctl.managed_nodes(config):
        if node.initialized and not node.running():
            progress(f"starting database node {node.name} (port {node.port})")
            node.start()
            steps.append(f"start {node.name}")

    # whichever node is not in recovery is the primary now (it may have changed by a failover)
    current = _current_primary(config) or primary
    with connect(node_dsn(config, current.name, dbname="postgres")) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db.user,)).fetchone():
            from psycopg import sql

            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(db.user),
                                                                             sql.Literal(password)))
            steps.append(f"create role {db.user}")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.name,)).fetchone():
            from psycopg import sql

            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db.name),
                                                                       sql.Identifier(db.user)))
            steps.append(f"create database {db.name}")

    for replica in db.replicas:
        node = pgctl.managed_node(config, replica.name)
        if not node.initialized:
            progress(f"cloning replica {node.name} from {current.name} (pg_basebackup)")
            with connect(node_dsn(config, current.name, dbname="postgres")) as conn:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = %s AND NOT active", (_slot(node.name),))
            node.clone_from(current, db.superuser, password, _slot(node.name))
            _set_application_name(node, node.name)
            node.start()
            steps.append(f"clone {node.name}")
    if db.synchronous and db.replicas:
        try:
            from ragops.db.replication import configure_sync
        except ImportError:
            raise OperationFailed("database.synchronous needs ragops.db.replication, which is missing") from None
        configure_sync(config, progress)
    return steps


def _slot(name: str) -> str:
    return name.replace("-", "_")


def _set_application_name(node, name: str) -> None:
    """Name the replica's walreceiver after the node, so synchronous_standby_names can list it."""
    auto = node.data_dir / "postgresql.auto.conf"
    text = auto.read_text()
    text = text.replace("primary_conninfo = '", f"primary_conninfo = 'application_name={name} ", 1)
    auto.write_text(text)


def _current_primary(config: Config):
    """The managed node accepting writes now (it may have changed by a failover), or None."""
    from ragops.db import pgctl
    from ragops.db.replication import primary_status, topology

    live = primary_status(topology(config))
    return pgctl.managed_node(config, live.name) if live else None


def migrate(config: Config, progress: Progress = _noop) -> list[str]:
    from ragops.db.connect import node_dsn
    from ragops.db.migrate import apply_migrations

    current = _current_primary(config)
    node_name = current.name if current else config.database.primary.name
    migrations = config.resolve_path(config.service.path) / "migrations"
    return apply_migrations(node_dsn(config, node_name), migrations, app_user=config.database.user,
                            progress=progress)


def up(config: Config, progress: Progress = _noop) -> UpResult:
    start = time.monotonic()
    platform = get_platform(config)
    result = UpResult(environment=config.env_name, router=platform.router_url())
    if config.env.platform != "local":
        result.steps = platform.up(progress)
        result.seconds = round(time.monotonic() - start, 2)
        return result
    result.steps += database_up(config, progress)
    applied = migrate(config, progress)
    result.steps += [f"migrate {name}" for name in applied]
    platform.start_router(progress)
    colors = platform.colors()
    live = [c for c in colors if c.running and c.weight > 0]
    if not live:
        running = [c for c in colors if c.running and c.ready]
        if running:
            color = running[0]
        else:
            color = platform.color_state("blue", probe=False)
            state = platform.start_color("blue", config.service.version, deploy_id=f"up-{uuid.uuid4().hex[:8]}",
                                         progress=progress)
            result.steps.append(f"start blue {state.version}")
            wait_ready(platform, "blue", config.service.startup_timeout, progress)
        platform.set_weights({color.color: 100})
        result.steps.append(f"route 100% to {color.color}")
    result.seconds = round(time.monotonic() - start, 2)
    return result


def wait_ready(platform, color: str, timeout: float, progress: Progress = _noop, *, url: str | None = None,
               where: str | None = None) -> float:
    """Poll the color's readiness until it answers 200; OperationFailed with its reason if not.

    `url`/`where`: one host's direct URL and its name, for platforms with several hosts."""
    import httpx

    url = (url or platform.color_url(color)) + platform.config.service.readiness_path
    name = f"{color} on host {where}" if where else color
    start = time.monotonic()
    last = "no answer"
    with httpx.Client(timeout=2) as client:
        while time.monotonic() - start < timeout:
            try:
                resp = client.get(url)
                if resp.status_code == 200:
                    progress(f"{name} is ready ({time.monotonic() - start:.1f}s)")
                    return time.monotonic() - start
                last = f"{resp.status_code} {resp.text[:160]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            state = platform.color_state(color, probe=False)
            if not state.running:
                from ragops.process import tail

                log = tail(platform.log_dir / f"{color}.log", 20) if hasattr(platform, "log_dir") else ""
                raise OperationFailed(f"{name} exited before it was ready: {_reason(log) or state.detail or last}",
                                      hint=f"ragops logs {color}")
            time.sleep(0.2)
    raise OperationFailed(f"{name} was not ready within {timeout:.0f}s ({platform.config.service.readiness_path}: {last})")


def _reason(log: str) -> str:
    """The line of a log tail that says why a process died (uvicorn ends with a shutdown line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1]


def down(config: Config, purge: bool = False, progress: Progress = _noop) -> list[str]:
    platform = get_platform(config)
    if config.env.platform != "local":
        return platform.down(purge=purge, progress=progress)
    from ragops.db import pgctl
    from ragops.platforms.base import COLORS

    steps = []
    regions = [None] + [r for r in config.env.regions if get_platform(config, r).region]
    for region in regions:
        region_platform = get_platform(config, region)
        for color in COLORS:
            if region_platform.proc(color).running():
                region_platform.stop_color(color, drain_timeout=config.deploy.drain_timeout, progress=progress)
                steps.append(f"stop {color}" + (f" ({region})" if region else ""))
        if region_platform.router_running():
            progress("stopping router" + (f" ({region})" if region else ""))
            region_platform.stop_router()
            steps.append("stop router" + (f" ({region})" if region else ""))
    for node in reversed(pgctl.managed_nodes(config)):
        if node.running():
            progress(f"stopping database node {node.name}")
            node.stop()
            steps.append(f"stop {node.name}")
    if purge and config.state_dir.exists():
        shutil.rmtree(config.state_dir)
        steps.append(f"delete {config.state_dir}")
    return steps


def database_nodes(config: Config) -> list[dict]:
    """Each node's role, timeline, WAL positions and replication lag (see `ragops db status`)."""
    from ragops.db.replication import topology

    return [node.to_dict() for node in topology(config)]


def status(config: Config) -> dict:
    platform = get_platform(config)
    lock = platform.lock_backend().read()
    data = {
        "environment": config.env_name,
        "platform": config.env.platform,
        "router": {"address": platform.router_url(),
                   "running": platform.router_running() if hasattr(platform, "router_running") else None,
                   "weights": platform.router_weights(),
                   "maintenance": platform.maintenance() if hasattr(platform, "maintenance") else False},
        "colors": [c for c in platform.colors()],
        "database": database_nodes(config) if not config.database.dsn else [],
        "lock": lock,
    }
    try:
        from ragops.deploy.history import last_deploy

        data["last_deploy"] = last_deploy(platform)
    except ImportError:
        data["last_deploy"] = None
    return data
