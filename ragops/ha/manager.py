"""`database.ha: patroni` on the local platform: the database manager bring-up uses
(ragops/db/bringup.py picks it by settings). etcd first, then one Patroni per node (the configured
primary first, so it is the one that bootstraps), and the reverse on the way down.
"""
from __future__ import annotations

import time

from ragops.events import Say
from ragops.events import quiet as _noop
from ragops.ha import patroni
from ragops.ha.etcd import EtcdCluster

BOOTSTRAP_TIMEOUT = 120.0
_LEADERLESS_SINCE: dict[str, float] = {}
JOIN_TIMEOUT = 180.0
WRITABLE_TIMEOUT = 120.0


class PatroniDatabase:
    """Patroni + etcd own the database nodes; ragops starts, stops and reads them."""

    kind = "patroni"

    def __init__(self, config):
        self.config = config
        self.etcd = EtcdCluster(config)

    def up(self, progress: Say = _noop) -> tuple[list[str], str]:
        """Start etcd and every node's Patroni; returns the steps and the leader's name."""
        from ragops.db.connect import db_password
        from ragops.pg import pgctl

        steps = self.etcd.up(progress)
        password = db_password(self.config)
        pgctl.server_home(self.config, create=True)
        members = patroni.nodes(self.config)
        first = self._first_to_start(members)
        rest = [n for n in members if n is not first]
        if patroni.leader(self.config) is None and not first.proc.running():
            steps += self._resume_primary(first, progress)
            progress(f"starting Patroni for {first.name} first ({self._why_first(first)})")
            patroni.start_node(self.config, first, password)
            steps.append(f"start patroni {first.name}")
        leader = patroni.wait_for(lambda: patroni.leader(self.config), BOOTSTRAP_TIMEOUT,
                                  "a Patroni leader (see logs/patroni-*.log)")
        for node in [first, *rest]:
            if not node.proc.running():
                progress(f"starting Patroni for {node.name}")
                patroni.start_node(self.config, node, password)
                steps.append(f"start patroni {node.name}")
        patroni.wait_for(self._all_running, JOIN_TIMEOUT, "every Patroni member to run (see logs/patroni-*.log)",
                         interval=0.5)
        steps += self.components_up(progress)
        return steps, patroni.leader(self.config) or leader

    def components_up(self, progress: Say = _noop) -> list[str]:
        """The fence watchdogs, the leader-aware endpoint and the DCS settings the file gives; then
        wait (bounded) until the endpoint reaches a writable leader (after quorum loss it takes a while)."""
        from ragops.ha import endpoint, watchdog

        names = [n.name for n in patroni.nodes(self.config)]
        steps = watchdog.ensure(self.config, names, progress)
        steps += endpoint.ensure(self.config, progress)
        endpoint.wait_writable(self.config, WRITABLE_TIMEOUT, progress)
        return steps + reconcile_dcs(self.config, progress)   # with the DCS writable again

    def _first_to_start(self, members: list[patroni.PatroniNode]) -> patroni.PatroniNode:
        """The node that led when `down` stopped the cluster (recorded by down), else the configured
        primary: starting another one first would let Patroni promote a node that is behind."""
        from ragops.ha.leader_record import read_last_leader

        last = read_last_leader(self.config)
        for node in members:
            if node.name == last and node.node.initialized:
                return node
        return members[0]

    def _resume_primary(self, node: patroni.PatroniNode, progress: Say) -> list[str]:
        """The recorded leader, cleanly shut down as a primary: its PostgreSQL starts as that primary
        before its Patroni, which then takes the free key for the running primary. Started by Patroni
        it would come up in recovery and be promoted: a new timeline on every down + up."""
        from ragops.ha.leader_record import read_last_leader

        if read_last_leader(self.config) != node.name or not node.node.initialized or node.node.running():
            return []
        from ragops.db.standby import controldata

        if controldata(self.config, node.name).get("Database cluster state") != "shut down":
            return []   # crashed, or a replica: Patroni decides how it starts
        progress(f"starting {node.name}'s PostgreSQL as the primary down stopped (no promotion, same timeline)")
        node.node.start()
        return [f"start {node.name} (primary, same timeline)"]

    def _why_first(self, node: patroni.PatroniNode) -> str:
        from ragops.ha.leader_record import read_last_leader

        if read_last_leader(self.config) == node.name:
            return "it led when the cluster was stopped"
        return "the configured primary; it bootstraps the cluster when it is new"

    def plan(self) -> list[str]:
        """What `up` starts, in order (`up --dry-run`)."""
        from ragops.ha import endpoint, watchdog

        members = patroni.nodes(self.config)
        first = self._first_to_start(members)
        lines = [f"etcd: member {m.name} (client {m.client_port}, peer {m.peer_port})" for m in self.etcd.members]
        lines.append(f"patroni: {first.name} first ({self._why_first(first)}), PostgreSQL on 127.0.0.1:{first.port}, "
                     f"REST API on {first.rest_port}")
        lines += [f"patroni: {n.name}, PostgreSQL on 127.0.0.1:{n.port} (a replica cloned by Patroni), "
                  f"REST API on {n.rest_port}" for n in members if n is not first]
        lines.append(f"endpoint: HAProxy on 127.0.0.1:{endpoint.port(self.config)} -> the node whose Patroni "
                     "answers GET /primary (the service's DATABASE_URL and migrations)")
        lines += [f"watchdog: {n.name} (stops its primary {watchdog.fence_after(self.config):.0f}s after its "
                  "Patroni stops answering)" for n in members]
        from ragops.ha.sync import sync_settings

        mode = self.config.database.ha_sync
        lines.append(f"ha_sync: {mode} ({', '.join(f'{k}={v}' for k, v in sync_settings(self.config).items())})")
        return lines

    def _all_running(self) -> bool:
        data = patroni.cluster(self.config) or {}
        states = {m["name"]: m.get("state") for m in data.get("members", [])}
        return all(states.get(n.name) in ("running", "streaming") for n in patroni.nodes(self.config))

    def down(self, progress: Say = _noop) -> list[str]:
        """Replicas' Patroni first, then the leader's (no failover on the way down), then etcd."""
        from ragops.ha import endpoint, watchdog
        from ragops.ha.leader_record import write_last_leader

        all_nodes = patroni.nodes(self.config)
        # the fences first: a Patroni stopped on purpose must not get its PostgreSQL stopped under it
        steps = watchdog.stop(self.config, [n.name for n in all_nodes])
        leader = patroni.leader(self.config)
        if leader is not None:   # `up` starts it first: no stale node is promoted, no new timeline
            write_last_leader(self.config, leader)
        ordered = sorted(all_nodes, key=lambda n: n.name == leader)
        for node in ordered:
            if node.proc.running():
                progress(f"stopping Patroni for {node.name} (stops its PostgreSQL)")
                node.proc.stop(timeout=90)
                steps.append(f"stop patroni {node.name}")
            if node.node.running():   # a postmaster left by a killed Patroni
                node.node.stop()
                steps.append(f"stop {node.name}")
        if endpoint.stop(self.config):
            steps.append("stop db-endpoint")
        steps += self.etcd.down(progress)
        return steps

    def dead_components(self) -> list[tuple[str, object]]:
        """What the supervisor should restart now: dead etcd members, and a dead Patroni once another
        node leads (restarted while its leader key still lives it would take the leadership back
        instead of a healthy replica), or once no node has taken the expired key for a few loops."""
        from ragops.db.connect import db_password

        found: list[tuple[str, object]] = []
        if self.config.database.ha_fast_release:   # before the restarts: a dead leader's key goes first
            from ragops.ha.fast_release import release_dead_leader

            release_dead_leader(self.config, self.etcd)
        from ragops.ha import endpoint, watchdog

        for member in self.etcd.members:
            if not member.proc.running():
                found.append((member.name, lambda m=member: self.etcd.start_member(m)))
        if not endpoint.proc(self.config).running():
            found.append((endpoint.PROC, lambda: endpoint.start(self.config)))
        all_nodes = patroni.nodes(self.config)
        for n in all_nodes:
            if not watchdog.proc(self.config, n.name).running():
                found.append((watchdog.proc_name(n.name), lambda name=n.name: watchdog.start(self.config, name)))
        dead = [n for n in all_nodes if not n.proc.running()]
        if not dead:
            return found
        holder = (patroni.cluster(self.config) or {}).get("members", [])
        leader = next((m["name"] for m in holder if m.get("role") == "leader"), None)
        everything_down = len(dead) == len(patroni.nodes(self.config))
        leaderless = self._leaderless_for(leader is None)
        for node in dead:
            # its postmaster still runs (Patroni alone died): back at once, it takes its PostgreSQL back
            # (and its leader key while it lives: no failover); another node leads: it rejoins as a
            # replica; nobody runs: a cold start; no node took the expired key within a few loops (none
            # may: synchronous_mode, maximum_lag_on_failover): it comes back and Patroni decides;
            # otherwise (a dead node whose key still lives) wait, and the outage is counted meanwhile
            if (watchdog.postmaster_alive(node) or (leader is not None and node.name != leader)
                    or (leader is None and everything_down)
                    or leaderless > max(5.0, 3.0 * self.config.database.patroni.loop_wait)):
                found.append((f"patroni-{node.name}",
                              lambda n=node: patroni.start_node(self.config, n, db_password(self.config))))
            else:
                found.append((f"patroni-{node.name}", None))
        return found

    def _leaderless_for(self, leaderless: bool) -> float:
        """Seconds the cluster has had no leader key (the supervisor's ticks share this record)."""
        scope = patroni.scope(self.config)
        if not leaderless:
            _LEADERLESS_SINCE.pop(scope, None)
            return 0.0
        return time.monotonic() - _LEADERLESS_SINCE.setdefault(scope, time.monotonic())

    def status(self) -> dict:
        data = patroni.cluster(self.config)
        members = []
        for m in (data or {}).get("members", []):
            members.append({"name": m.get("name"), "role": m.get("role"), "state": m.get("state"),
                            "host": m.get("host"), "port": m.get("port"), "timeline": m.get("timeline"),
                            "lag_bytes": m.get("lag"), "tags": m.get("tags") or {}})
        leader = next((m["name"] for m in members if m["role"] == "leader"), None)
        from ragops.ha.truth import live_view

        dcs = self.etcd.health()
        return {"ha": "patroni", "scope": patroni.scope(self.config), "reachable": data is not None,
                "leader": leader, "paused": bool((data or {}).get("pause")), "members": members,
                "dcs": dcs, **live_view(self.config, self.etcd, dcs)}

    def writer_dsn(self) -> str:
        """Where ragops' own writes go (migrations): the leader-aware endpoint, never a node directly."""
        from ragops.ha.endpoint import dsn

        return dsn(self.config)


def reconcile_dcs(config, progress: Say = _noop) -> list[str]:
    """Patch the running cluster's synchronous mode to what the file says (bootstrap settings reach
    only a new cluster); says what it changed."""
    from ragops.ha.sync import mode_of, sync_settings
    from ragops.ha.verbs import apply_config, read_config

    want = sync_settings(config)
    current = read_config(config)
    changes = {k: v for k, v in want.items() if bool(current.get(k)) != v}
    if not changes:
        return []
    progress(f"database.ha_sync: {mode_of(current)} -> {mode_of({**current, **changes})} on the running cluster")
    apply_config(config, changes)
    return [f"set {k}={str(v).lower()}" for k, v in changes.items()]
