"""`ragops status`: the router, both colors, the database nodes, the deploy lock and the last deploy."""
from __future__ import annotations

from ragops.config import Config
from ragops.deploy.history import last_deploy
from ragops.deploy.lock import owner_alive
from ragops.deploy.states import next_step
from ragops.platforms import get_platform


def database_nodes(config: Config) -> list[dict]:
    """Each node's role, timeline, WAL positions and replication lag (see `ragops db status`)."""
    from ragops.db.replication import topology

    return [node.to_dict() for node in topology(config)]


def deploy_state(last: dict | None, lock: dict | None) -> dict | None:
    """An unfinished deploy: its phase, whether its lock is stale, and what to run next."""
    if not last or not last.get("in_progress"):
        return None
    return {"id": last.get("id"), "strategy": last.get("strategy"), "version": last.get("version"),
            "phase": last.get("phase"), "interrupted_change": (last.get("intent") or {}).get("action"),
            "stale_lock": lock is not None and not owner_alive(lock), "lock_held": bool(lock),
            "hint": next_step(last)}


def status(config: Config) -> dict:
    platform = get_platform(config)
    lock = platform.lock_backend().read()
    running = platform.router_running()
    colors = platform.colors()
    # the header's weights are the rows' weights: one read of the router (nothing when it is down)
    weights = {c.color: c.weight for c in colors if c.weight > 0}
    last = last_deploy(platform)
    data = {
        "environment": config.env_name,
        "platform": platform.name,
        "router": {"address": platform.router_url(),
                   "running": running,
                   "weights": weights,
                   "maintenance": platform.maintenance()},
        "colors": colors,
        "database": database_nodes(config) if not config.database.dsn else [],
        "lock": lock,
        "lock_stale": lock is not None and not owner_alive(lock),
        "last_deploy": last,
        "deploy": deploy_state(last, lock),
    }
    from ragops.pitr.recover_journal import state as recover_state

    data["recover"] = recover_state(config)   # an interrupted `db recover` and what to run
    if platform.owns_database_files and not config.database.dsn:
        from ragops.pitr.kept import total_bytes

        data["kept_aside_bytes"] = total_bytes(config)   # type: ignore[assignment]  # `ragops db kept` lists them
    from ragops.db.bringup import database_manager

    manager = database_manager(config)   # Patroni in charge: its leader, members and etcd quorum
    if manager is not None:
        data["ha"] = manager.status()
    from ragops.supervisor import read_status

    supervisor = read_status(platform)    # None where no supervisor ever ran (docker, kubernetes)
    if supervisor is not None:
        data["supervisor"] = supervisor
    return data
