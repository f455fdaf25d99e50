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


@operation("ha.fault")
def ha_fault(ctx: Context, *, fault: Any = "node") -> dict:
    """One or several faults of the HA matrix (comma-separated: node, patroni, freeze, postmaster,
    etcd-member, etcd-quorum, switchover, down-up), each under a writer through the service, a direct
    writer and a 100 ms probe for two writable nodes (ragops/ha/matrix.py).

    Outputs: rows (one per fault), lost_acked_writes (all faults), write_pause_seconds (the longest),
    rpo_seconds (how long before the fault the earliest missing acknowledged write was acknowledged,
    0 when none is missing), two_writable_ms.
    """
    from ragops.ha.matrix import FAULTS, run_fault

    config = ctx.require_config()
    if config.database.ha != "patroni":
        raise ConfigError(f"environments.{config.env_name}.database.ha: the auto-failover drill needs ha: patroni")
    faults = [f.strip() for f in str(fault).split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        raise ConfigError(f"fault: {', '.join(unknown) or 'none given'}: expected one or several of {', '.join(FAULTS)}")
    rows = [{k: v for k, v in run_fault(config, f, progress=ctx.progress).items() if k != "status_seen"}
            for f in faults]
    spans = [r["lost_span_s"] for r in rows if r.get("lost_span_s")]
    return {"rows": rows, "lost_acked_writes": sum(r["lost_service"] + r["lost_direct"] for r in rows),
            "write_pause_seconds": max(r["write_pause_s"] for r in rows),
            "rpo_seconds": round(max(0.0, -min(s[0] for s in spans)), 2) if spans else 0.0,
            "two_writable_ms": sum(r["two_writable_ms"] + r["endpoint_split_ms"] for r in rows)}
