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
        first, rest = members[0], members[1:]
        if patroni.leader(self.config) is None and not first.proc.running():
            progress(f"starting Patroni for {first.name} (bootstraps the cluster when it is new)")
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
        return steps, patroni.leader(self.config) or leader

    def _all_running(self) -> bool:
        data = patroni.cluster(self.config) or {}
        states = {m["name"]: m.get("state") for m in data.get("members", [])}
        return all(states.get(n.name) in ("running", "streaming") for n in patroni.nodes(self.config))

    def down(self, progress: Say = _noop) -> list[str]:
        """Replicas' Patroni first, then the leader's (no failover on the way down), then etcd."""
        steps = []
        leader = patroni.leader(self.config)
        ordered = sorted(patroni.nodes(self.config), key=lambda n: n.name == leader)
        for node in ordered:
            if node.proc.running():
                progress(f"stopping Patroni for {node.name} (stops its PostgreSQL)")
                node.proc.stop(timeout=90)
                steps.append(f"stop patroni {node.name}")
            if node.node.running():   # a postmaster left by a killed Patroni
                node.node.stop()
                steps.append(f"stop {node.name}")
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
        for member in self.etcd.members:
            if not member.proc.running():
                found.append((member.name, lambda m=member: self.etcd.start_member(m)))
        dead = [n for n in patroni.nodes(self.config) if not n.proc.running()]
        if not dead:
            return found
        holder = (patroni.cluster(self.config) or {}).get("members", [])
        leader = next((m["name"] for m in holder if m.get("role") == "leader"), None)
        everything_down = len(dead) == len(patroni.nodes(self.config))
        leaderless = self._leaderless_for(leader is None)
        for node in dead:
            # another node leads: it rejoins as a replica; nobody runs: a cold start; no node took the
            # expired key within a few loops (none may: synchronous_mode, maximum_lag_on_failover): it
            # comes back and Patroni decides; otherwise (its key still lives) wait
            if ((leader is not None and node.name != leader) or (leader is None and everything_down)
                    or leaderless > max(5.0, 3.0 * self.config.database.patroni.loop_wait)):
                found.append((f"patroni-{node.name}",
                              lambda n=node: patroni.start_node(self.config, n, db_password(self.config))))
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
        return {"ha": "patroni", "scope": patroni.scope(self.config), "reachable": data is not None,
                "leader": leader, "paused": bool((data or {}).get("pause")), "members": members,
                "dcs": self.etcd.health()}

