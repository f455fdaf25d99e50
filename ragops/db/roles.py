"""Database nodes addressed by role: `primary` and `replica` are resolved when a step runs.

After `db switchover replica1`, the node configured as `primary` is a replica: a runbook's SQL
aimed at it by name failed with "read-only transaction". A runbook step (sql, backup.restore) that
names no node, or names a role, gets the node holding that role now. While no node accepts writes
(the few seconds of a switchover or failover) while some node answers, it waits for one, up to
ROLE_WAIT seconds.
"""
from __future__ import annotations

import time

from ragops.config import Config, DbNode
from ragops.db.connect import find_node, node_dsn
from ragops.errors import OperationFailed

ROLES = ("primary", "replica")
ROLE_WAIT = 60.0


def resolve_node(config: Config, node: str | None, wait: float = ROLE_WAIT) -> DbNode:
    """`primary` (also: no node) or `replica`: the node in that role now; any other name: that node."""
    from ragops.db.replication import current_primary, primary_status, topology

    if node and node not in ROLES:
        return find_node(config, node)
    deadline = time.monotonic() + wait
    while True:
        statuses = topology(config)
        if node == "replica":
            replicas = [s for s in statuses if s.role == "replica" and s.reachable]
            streaming = [s for s in replicas if s.streaming] or replicas
            if streaming:
                return find_node(config, streaming[0].name)
        else:
            live = primary_status(statuses)
            if live is not None:
                return find_node(config, live.name)
        if not any(s.reachable for s in statuses):
            # nothing answers (not a switchover: the database is down): the recorded primary, and
            # the step's own connection fails as it would have
            return current_primary(config, statuses)
        if time.monotonic() >= deadline:
            seen = ", ".join(f"{s.name} {s.role}" for s in statuses) or "no nodes"
            raise OperationFailed(f"no database node is {'a replica' if node == 'replica' else 'the primary'} "
                                  f"after waiting {wait:.0f}s ({seen})")
        time.sleep(0.5)


def role_dsn(config: Config, node: str | None, dbname: str | None = None) -> str:
    """node_dsn() of the node `node` names or holds the role `node` names (default: the primary)."""
    return node_dsn(config, resolve_node(config, node), dbname=dbname)
