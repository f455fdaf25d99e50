"""Availability: RTO/RPO planning and high availability, from what `ragops status` reads live
(database nodes, replication, Patroni, the deploy lock, the colors) and the DNS provider."""
from __future__ import annotations

from ragops.audit.facts import Facts, lsn_bytes
from ragops.audit.model import Outcome, check, failed, not_applicable, partial, passed

MB = 2**20


def nodes(facts: Facts) -> list[dict]:
    return list(facts.status.get("database") or [])


@check("availability.database-nodes", severity="critical", title="Exactly one writable primary, every node answering",
       expected="one reachable primary, every configured replica reachable",
       fix="ragops db status   (then ragops up, or ragops db rejoin <node>)")
def database_nodes(facts: Facts) -> Outcome:
    if facts.config.database.dsn:
        return not_applicable("external database (database.dsn): its provider answers for it")
    rows = nodes(facts)
    primaries = [n["name"] for n in rows if n.get("role") == "primary" and not n.get("read_only")]
    down = [n["name"] for n in rows if not n.get("reachable")]
    if len(primaries) != 1 or down:
        parts = [f"{len(primaries)} writable primar{'y' if len(primaries) == 1 else 'ies'}"
                 + (f" ({', '.join(primaries)})" if primaries else "")]
        if down:
            parts.append(f"unreachable: {', '.join(down)}")
        return failed("; ".join(parts))
    return passed(f"primary {primaries[0]}, {len(rows) - 1} replica(s) answering")


@check("availability.replica-lag", severity="high", title="Replicas keep up",
       expected="each replica streaming, lag under audit.replica_lag_warn_bytes (critical above replica_lag_critical_bytes)",
       fix="ragops db status   (a lagging replica: its disk, network, or a long query; a stopped one: ragops db rejoin)")
def replica_lag(facts: Facts) -> Outcome:
    if facts.config.database.dsn:
        return not_applicable("external database (database.dsn)")
    replicas = [n for n in nodes(facts) if n.get("role") != "primary"]
    if not facts.config.database.replicas:
        return failed("no replica configured: a primary's loss is a restore from backup",
                      fix="add database.replicas in ragops.yaml, then ragops up")
    warn, critical = facts.settings.replica_lag_warn_bytes, facts.settings.replica_lag_critical_bytes
    worst, lines = 0.0, []
    for node in replicas:
        lag = node.get("lag_bytes")
        if not node.get("reachable") or node.get("streaming") is False or lag is None:
            worst = max(worst, 1.0)
            lines.append(f"{node['name']}: not streaming ({node.get('error') or node.get('role')})")
            continue
        lines.append(f"{node['name']}: {lag / MB:.1f} MB behind")
        worst = max(worst, 1.0 if lag > critical else 0.5 if lag > warn else 0.0)
    observed = "; ".join(lines) or "no replica answering"
    if worst >= 1.0 or not replicas:
        return failed(observed)
    return partial(observed, 0.5) if worst else passed(observed)


@check("availability.replication-slots", severity="medium", title="No replication slot holds WAL for nobody",
       expected="no inactive slot retaining more than audit.slot_retained_warn_bytes of WAL",
       fix="SELECT pg_drop_replication_slot('<name>') on the primary for a slot no replica uses")
def replication_slots(facts: Facts) -> Outcome:
    primary = next((n for n in nodes(facts) if n.get("role") == "primary" and n.get("reachable")), None)
    if primary is None:
        return not_applicable("no reachable primary (see availability.database-nodes)")
    current = lsn_bytes(primary.get("current_lsn")) or 0
    held = []
    for slot in primary.get("slots") or []:
        restart = lsn_bytes(slot.get("restart_lsn"))
        retained = current - restart if restart is not None else 0
        if not slot.get("active") and retained > facts.settings.slot_retained_warn_bytes:
            held.append(f"{slot['name']} (inactive) holds {retained / MB:.0f} MB")
    if held:
        return failed("; ".join(held), fix="; ".join(f"SELECT pg_drop_replication_slot('{h.split(' ')[0]}')" for h in held))
    return passed(f"{len(primary.get('slots') or [])} slot(s), none holding WAL unused")


@check("availability.patroni-timing", severity="high", title="Patroni's timing leaves room for a failover",
       expected="loop_wait + 2 x retry_timeout < ttl (Patroni's own rule)",
       fix="lower database.patroni.loop_wait / retry_timeout or raise ttl, then ragops up")
def patroni_timing(facts: Facts) -> Outcome:
    if facts.config.database.ha != "patroni":
        return not_applicable("database.ha is manual")
    p = facts.config.database.patroni
    observed = f"loop_wait {p.loop_wait} + 2 x retry_timeout {p.retry_timeout} = {p.loop_wait + 2 * p.retry_timeout} vs ttl {p.ttl}"
    return passed(observed) if p.loop_wait + 2 * p.retry_timeout < p.ttl else failed(observed)


@check("availability.replication-mode", severity="medium", title="Replication mode fits the RPO target",
       expected="synchronous replication, or asynchronous lag (seconds) within slo.rpo_seconds",
       fix="set database.synchronous: true (or database.patroni.synchronous_mode: true with ha: patroni)")
def replication_mode(facts: Facts) -> Outcome:
    db = facts.config.database
    if db.dsn:
        return not_applicable("external database (database.dsn)")
    if db.synchronous or (db.ha == "patroni" and db.patroni.synchronous_mode):
        return passed("synchronous replication: an acknowledged write is on a standby")
    lags: list[float] = [n["lag_seconds"] for n in nodes(facts) if n.get("role") == "replica" and n.get("lag_seconds") is not None]
    target = facts.config.slo.rpo_seconds
    worst = max(lags) if lags else None
    if worst is None:
        return failed(f"asynchronous replication and no replica lag measured (RPO target {target:.0f} s)")
    observed = f"asynchronous replication, lag {worst:.1f} s (RPO target {target:.0f} s)"
    return passed(observed) if worst <= target else failed(observed)


@check("availability.deploy-lock", severity="high", title="No stale deploy lock",
       expected="the deploy lock free, or held by a deploy that is alive",
       fix="ragops lock status, then ragops abort (or ragops deploy --resume) for the interrupted deploy")
def deploy_lock(facts: Facts) -> Outcome:
    lock = facts.status.get("lock")
    if not lock:
        return passed("the deploy lock is free")
    holder = (f"{lock.get('command') or 'a command'} of {lock.get('owner') or '?'}@{lock.get('host') or '?'} "
              f"(pid {lock.get('pid', '?')}, since {lock.get('created') or '?'})")
    if facts.status.get("lock_stale"):
        return failed(f"held by a dead process: {holder}")
    return passed(f"held by a running deploy: {holder}")


@check("availability.rollback-ready", severity="medium", title="The previous version is warm for an instant rollback",
       expected="deploy.keep_previous >= 1 and, after a deploy, the previous color running and healthy",
       fix="set deploy.keep_previous: 1; ragops rollback then flips the router instead of starting a color")
def rollback_ready(facts: Facts) -> Outcome:
    if facts.config.deploy.keep_previous < 1:
        return failed("deploy.keep_previous is 0: a rollback must start the old version first")
    colors = facts.status.get("colors") or []
    live = [c for c in colors if c.get("weight", 0) > 0]
    warm = [c for c in colors if c.get("weight", 0) == 0 and c.get("running") and c.get("healthy")]
    if warm:
        return passed(f"{warm[0]['color']} ({warm[0].get('version')}) is warm beside the live "
                      f"{', '.join(c['color'] for c in live) or 'nothing'}")
    if not facts.status.get("last_deploy"):
        return not_applicable("no deploy yet: nothing to roll back to")
    return failed("no warm previous color: a rollback would have to start one")


@check("availability.dns-failover", severity="medium", title="DNS failover records in place",
       expected="the service's record points at the primary, and a secondary is configured",
       fix="ragops dns setup   (health checks and failover records), then ragops dns status")
def dns_failover(facts: Facts) -> Outcome:
    dns = facts.config.dns
    if not (dns.zone or dns.zone_id) or not dns.record:
        return not_applicable("no DNS configured (dns.zone, dns.record)")
    if not dns.secondary:
        return failed("dns.secondary is not set: there is nowhere to fail over to")
    from ragops.dns.registry import get_provider

    state = get_provider(facts.config).status()
    observed = f"{state.record} {state.type} -> {state.value} ({state.points_to})"
    return passed(observed) if state.points_to == "primary" else failed(observed)
