"""`ragops status`: the router, both colors, the database nodes, the deploy lock and the last deploy."""
from __future__ import annotations

from ragops.config import Config
from ragops.deploy.history import last_deploy
from ragops.platforms import get_platform


def database_nodes(config: Config) -> list[dict]:
    """Each node's role, timeline, WAL positions and replication lag (see `ragops db status`)."""
    from ragops.db.replication import topology

    return [node.to_dict() for node in topology(config)]


def status(config: Config) -> dict:
    platform = get_platform(config)
    lock = platform.lock_backend().read()
    return {
        "environment": config.env_name,
        "platform": platform.name,
        "router": {"address": platform.router_url(),
                   "running": platform.router_running(),
                   "weights": platform.router_weights(),
                   "maintenance": platform.maintenance()},
        "colors": platform.colors(),
        "database": database_nodes(config) if not config.database.dsn else [],
        "lock": lock,
        "last_deploy": last_deploy(platform),
    }
