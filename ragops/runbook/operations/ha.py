"""High availability by Patroni (database.ha: patroni): the auto-failover drill's measurement."""
from __future__ import annotations

from typing import Any

from ragops.errors import ConfigError
from ragops.runbook.operations.common import duration
from ragops.runbook.operations.registry import Context, operation


@operation("ha.kill_leader")
def ha_kill_leader(ctx: Context, *, timeout: Any = "120s", rejoin_timeout: Any = "180s") -> dict:
    """Under write load through the router, kill -9 the leader node (Patroni + postmaster) and measure,
    with no ragops command, the seconds until writes are accepted and until the old node streams again.

    Outputs: writes_accepted_seconds, rejoined_seconds, lost_acked_writes, rpo_seconds, old/new_leader.
    """
    from ragops.ha.drill import measure_auto_failover

    config = ctx.require_config()
    if config.database.ha != "patroni":
        raise ConfigError(f"environments.{config.env_name}.database.ha: the auto-failover drill needs ha: patroni")
    return measure_auto_failover(config, timeout=duration(timeout, "timeout", 120.0),
                                 rejoin_timeout=duration(rejoin_timeout, "rejoin_timeout", 180.0),
                                 progress=ctx.progress)
