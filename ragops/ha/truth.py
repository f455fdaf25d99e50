"""What `status` and `db status` say about a Patroni cluster, read live at the moment of the call:
each node's Patroni (does it answer?) and PostgreSQL (does it accept writes?), the leader key in
etcd and etcd's quorum. Patroni's /cluster is not enough: during quorum loss it shows its last view
of the DCS, and a frozen leader's entry looks healthy until its key expires.

The problems it names (each makes the command exit 3): two nodes accept writes, a writable node that
is not the leader, a leader whose Patroni does not answer, a leader that is read-only or down, etcd
quorum lost, no leader.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ragops.ha import patroni
from ragops.ha.etcd import EtcdCluster

PROBE_TIMEOUT = 1.5


def _pg_writable(config, name: str) -> bool | None:
    """True: accepts writes; False: up but read-only (in recovery or read-only); None: no answer."""
    import psycopg

    from ragops.db.connect import node_dsn

    try:
        with psycopg.connect(node_dsn(config, name, dbname="postgres", connect_timeout=2), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
                               ).fetchone()
    except psycopg.Error:
        return None
    return row is not None and row[0] is False and row[1] == "off"


def _patroni_answers(node: patroni.PatroniNode) -> bool:
    from ragops.ha.watchdog import answers

    # a second look before calling it silent: a loaded host can miss one deadline (a frozen one misses both)
    return answers(node.rest_url, timeout=PROBE_TIMEOUT) or answers(node.rest_url, timeout=PROBE_TIMEOUT)


def _second_look_at_etcd(etcd: EtcdCluster, dcs: dict) -> None:
    """Members that missed the 1 s health check are asked again with more time (in parallel) before
    the quorum is called lost; `dcs` is corrected in place."""
    members = {m.name: m for m in etcd.members}
    sick = [name for name, m in dcs.get("members", {}).items() if not m.get("healthy") and name in members]
    if not sick:
        return
    with ThreadPoolExecutor(max_workers=len(sick)) as pool:
        again = {name: pool.submit(members[name].healthy, 2.5) for name in sick}
        for name, future in again.items():
            dcs["members"][name]["healthy"] = future.result()
    dcs["healthy"] = sum(1 for m in dcs["members"].values() if m.get("healthy"))
    dcs["quorum"] = dcs["healthy"] > len(dcs["members"]) // 2


def probe_nodes(config) -> dict[str, dict]:
    nodes = patroni.nodes(config)
    with ThreadPoolExecutor(max_workers=2 * len(nodes)) as pool:
        writable = {n.name: pool.submit(_pg_writable, config, n.name) for n in nodes}
        answers = {n.name: pool.submit(_patroni_answers, n) for n in nodes}
        return {n.name: {"patroni_answers": answers[n.name].result(), "writable": writable[n.name].result()}
                for n in nodes}


def problems(nodes: dict[str, dict], leader_key: str | None, quorum: bool, healthy: int, members: int,
             paused: bool = False) -> list[str]:
    """The problems, worst first, in words a person on call acts on."""
    found = []
    writable = sorted(n for n, v in nodes.items() if v["writable"])
    if len(writable) > 1:
        found.append(f"TWO NODES ACCEPT WRITES: {', '.join(writable)} (split brain)")
    if not quorum:
        found.append(f"ETCD QUORUM LOST ({healthy}/{members} healthy): no failover; the leader turns read-only")
    if leader_key is None:
        if quorum and not paused:
            found.append("NO LEADER: no node holds the leader key")
    else:
        leader = nodes.get(leader_key)
        if leader is not None and not leader["patroni_answers"]:
            found.append(f"LEADER {leader_key}: ITS PATRONI DOES NOT ANSWER (dead or frozen)")
        if leader is not None and leader["writable"] is False:
            found.append(f"LEADER {leader_key} IS READ-ONLY")
        elif leader is not None and leader["writable"] is None:
            found.append(f"LEADER {leader_key}: ITS POSTGRESQL DOES NOT ANSWER")
    for name in writable:
        if len(writable) == 1 and name != leader_key:
            found.append(f"{name} ACCEPTS WRITES BUT DOES NOT HOLD THE LEADER KEY")
    return found


def live_view(config, etcd: EtcdCluster, dcs: dict) -> dict:
    """{"live": per node, "leader_key": name or None, "problems": [...]} read now."""
    from ragops.ha.fast_release import read_leader

    nodes = probe_nodes(config)
    if not dcs.get("quorum"):
        _second_look_at_etcd(etcd, dcs)
    found = read_leader(config, etcd) if dcs.get("quorum") else None
    if found is None and dcs.get("quorum"):   # one missed read is not "no leader"
        found = read_leader(config, etcd)
    key = found[0] if found else None
    paused = False
    if key is None and dcs.get("quorum"):
        paused = bool((patroni.cluster(config) or {}).get("pause"))
    return {"live": nodes, "leader_key": key,
            "problems": problems(nodes, key, bool(dcs.get("quorum")), dcs.get("healthy", 0),
                                 len(dcs.get("members", {})), paused)}
