"""database.ha: patroni on the local platform against real etcd (three members) and Patroni, with
Patroni at its floor (ttl 20, loop_wait 1, retry_timeout 3) and database.ha_fast_release on (the
supervisor releases a leader key once the leader's processes are proven gone). One cluster for the
whole module. The failover time without fast release (the ttl path) is bench/auto_failover_bench.py's."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import httpx
import psycopg
import pytest

from ragops.netutil import port_open
from tests.conftest import need, server_tmpdir
from tests.integration.conftest import _pair_port, _start_stack

pytestmark = pytest.mark.integration


def _free_block(size: int) -> int:
    """`size` consecutive free loopback ports, below the kernel's ephemeral range (an outgoing
    connection's source port once took an etcd peer port drawn above it: "bind: address already in use")."""
    import random

    from ragops.netutil import _ephemeral_range

    low, _high = _ephemeral_range()
    for _ in range(200):
        base = random.randint(10000, max(10001, low - size - 1))
        if not any(port_open("127.0.0.1", base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


@pytest.fixture(scope="module")
def ha_stack():
    import importlib.util

    need(importlib.util.find_spec("patroni") is not None, "Patroni (pip install -e '.[ha]')")
    from ragops.ha.etcd import etcd_binary

    try:
        etcd_binary()
    except Exception as exc:  # noqa: BLE001
        need(False, f"etcd ({exc})")
    directory = server_tmpdir("patroni")
    extra = {"database": {"ha": "patroni", "ha_fast_release": True,
                          "patroni": {"ttl": 20, "loop_wait": 1, "retry_timeout": 3,
                                      "rest_port": _pair_port(), "etcd_port": _free_block(7)}}}
    stack = _start_stack(directory, extra=extra)
    try:
        yield stack
    finally:
        stack.cli("down", "--purge", "--yes", timeout=180)
        shutil.rmtree(directory, ignore_errors=True)


def _ha(stack) -> dict:
    """Patroni's view from `db status`, which exits 3 (with its JSON) while the cluster has a problem."""
    proc = stack.cli("--output", "json", "db", "status")
    assert proc.returncode in (0, 3), f"db status exited {proc.returncode}: {proc.stderr}"
    return json.loads(proc.stdout)["ha"]


def _member(ha: dict, name: str) -> dict:
    return next(m for m in ha["members"] if m["name"] == name)


def _write(stack, title: str, timeout: float = 5) -> str | None:
    try:
        r = httpx.post(f"{stack.router_url}/api/v1/documents", headers={"X-API-Key": stack.api_key},
                       json={"title": title, "content": title}, timeout=timeout)
    except httpx.HTTPError:
        return None
    return r.json()["id"] if r.status_code in (200, 201) else None


def _count_on(stack, port: int, ids: list[str]) -> int:
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres password={password} dbname=rag "
                         "connect_timeout=3", autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM documents WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()[0]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - the cluster is changing: look again
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _whole(stack) -> dict | None:
    ha = _ha(stack)
    roles = sorted((m["role"], m["state"]) for m in ha["members"])
    return ha if roles == [("leader", "running"), ("replica", "streaming")] else None


def _healthy(stack) -> dict:
    """Each destructive test starts from a whole cluster (a running leader, the other node streaming):
    a member an earlier failure left down is rejoined first, so one failure does not fail the rest."""
    try:
        return _wait(lambda: _whole(stack), 30, "a running leader and a streaming replica")
    except AssertionError:
        ha = _ha(stack)
        for m in ha["members"]:
            if (m["role"], m["state"]) not in (("leader", "running"), ("replica", "streaming")):
                print(f"repairing {m['name']} ({m['role']}, {m['state']}) left by an earlier test")
                stack.cli("--yes", "db", "rejoin", m["name"], timeout=180)
        return _wait(lambda: _whole(stack), 60, "the cluster to be whole again")


class Writer:
    """Writes through the router in a loop; records acknowledged ids."""

    def __init__(self, stack):
        self.stack, self.acked, self.failed = stack, [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            doc = _write(self.stack, f"load {n}", timeout=3)
            if doc:
                self.acked.append(doc)
            else:
                self.failed += 1
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def test_cluster_forms_and_replica_streams(ha_stack):
    ha = _ha(ha_stack)
    assert ha["leader"] == "primary" and not ha["paused"]
    assert _member(ha, "replica1")["state"] == "streaming"
    assert ha["dcs"]["healthy"] == 3 and ha["dcs"]["quorum"]
    doc = _write(ha_stack, "formed")
    assert doc
    from ragops.config import load_config

    replica_port = load_config(ha_stack.config_path).database.replicas[0].port
    _wait(lambda: _count_on(ha_stack, replica_port, [doc]) == 1, 10, "the row on the replica")


def test_promote_refused_with_healthy_leader(ha_stack):
    proc = ha_stack.cli("--yes", "db", "promote", "replica1")
    assert proc.returncode == 3, proc.stderr
    assert "healthy leader" in proc.stderr
    assert _ha(ha_stack)["leader"] == "primary"


def test_ha_pause_resume_and_config_plan_then_change(ha_stack):
    ha_stack.cli("--yes", "db", "ha", "pause", check=True)
    assert _ha(ha_stack)["paused"] is True
    ha_stack.cli("db", "ha", "resume", check=True)
    assert _ha(ha_stack)["paused"] is False
    plan = ha_stack.json("db", "ha", "config", "ttl=25", "--dry-run")
    assert plan == {"plan": [{"key": "ttl", "from": 20, "to": 25}], "applied": False}
    assert ha_stack.json("db", "ha", "config")["ttl"] == 20
    assert ha_stack.json("--yes", "db", "ha", "config", "ttl=25")["applied"] == {"ttl": 25}
    assert ha_stack.json("db", "ha", "config")["ttl"] == 25
    ha_stack.cli("--yes", "db", "ha", "config", "ttl=20", check=True)
    refused = ha_stack.cli("--yes", "db", "ha", "config", "ttl=5")
    assert refused.returncode == 2 and "ttl" in refused.stderr
    assert ha_stack.json("db", "ha", "config")["ttl"] == 20


def _etcd_member_used_by_leader(stack) -> str:
    """The etcd member the leader's Patroni has a connection to (its client talks to one at a time)."""
    import psutil

    from ragops.config import load_config
    from ragops.ha import patroni
    from ragops.ha.etcd import EtcdCluster

    config = load_config(stack.config_path)
    pid = patroni.find(config, _ha(stack)["leader"]).proc.pid()
    by_port = {m.client_port: m.name for m in EtcdCluster(config).members}
    used = [by_port[c.raddr.port] for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port in by_port]
    return used[0] if used else "etcd2"


def test_switchover_loses_nothing_with_one_etcd_member_frozen(ha_stack):
    """One of three etcd members frozen for longer than the ttl changes nothing; a switchover under
    write load loses no acknowledged row. The member frozen is the one the leader's Patroni talks to:
    its REST API then answers 503 "failed to write failover key into DCS" and ragops asks again."""
    _healthy(ha_stack)
    member = _etcd_member_used_by_leader(ha_stack)   # the worst one to lose: the leader's Patroni waits on it
    etcd2 = _etcd_pid(ha_stack, member)
    os.kill(etcd2, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        with Writer(ha_stack) as writer:
            time.sleep(1)
            proc = ha_stack.cli("--output", "json", "--yes", "db", "switchover", "replica1", timeout=120, check=True)
            print(f"frozen {member}; switchover said: {proc.stderr.strip()}")
            result = json.loads(proc.stdout)
            assert result["node"] == "replica1" and result["previous_leader"] == "primary"
            _wait(lambda: _member(_ha(ha_stack), "primary")["state"] == "streaming", 60, "primary to follow")
            while time.monotonic() - frozen_at < 22:   # longer than the ttl: the leader key is renewed
                assert _ha(ha_stack)["leader"] == "replica1"
                time.sleep(1)
        assert writer.acked, "no write was accepted"
        from ragops.config import load_config

        replica_port = load_config(ha_stack.config_path).database.replicas[0].port
        assert _count_on(ha_stack, replica_port, writer.acked) == len(writer.acked)
    finally:
        os.kill(etcd2, signal.SIGCONT)


def test_frozen_leader_is_never_released_and_no_second_primary(ha_stack):
    """SIGSTOP of the leader's Patroni and postmaster: unreachable but not gone. The fast-release
    watcher (it would act within a supervisor tick) releases nothing and the replica stays a replica."""
    _healthy(ha_stack)
    from ragops.config import load_config
    from ragops.ha import patroni
    from ragops.ha.etcd import EtcdCluster
    from ragops.ha.fast_release import read_leader, release_dead_leader

    config = load_config(ha_stack.config_path)
    leader = _ha(ha_stack)["leader"]
    other = next(n for n in patroni.nodes(config) if n.name != leader)
    node = patroni.find(config, leader)
    pids = [node.proc.pid(), node.node.pid()]
    key_before = read_leader(config, EtcdCluster(config))
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(8):   # 8 s: a release would come within 0.25 s, Patroni's own ttl is 20 s
            assert release_dead_leader(config) is None
            assert read_leader(config, EtcdCluster(config)) == key_before
            assert _in_recovery(ha_stack, other.port) is True
            time.sleep(1)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert _ha(ha_stack)["leader"] == leader
    assert _wait(lambda: _write(ha_stack, "after thaw"), 30, "writes after the thaw")


def _in_recovery(stack, port: int) -> bool:
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres "
                         "connect_timeout=3", autocommit=True) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def _etcd_pid(stack, name: str) -> int:
    import json

    return json.loads((stack.state_dir / "run" / f"{name}.pid").read_text())["pid"]


def test_dcs_quorum_lost_never_two_primaries(ha_stack):
    """Two of three etcd members frozen: no quorum. Patroni's leader cannot renew its key and demotes
    itself after retry_timeout (read-only), the replica stays a replica: no primary, never two. With the
    quorum back a leader is elected and the service writes again."""
    _healthy(ha_stack)
    from ragops.config import load_config
    from ragops.ha import patroni

    config = load_config(ha_stack.config_path)
    ports = [n.port for n in patroni.nodes(config)]
    pids = [_etcd_pid(ha_stack, "etcd2"), _etcd_pid(ha_stack, "etcd3")]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 45
        while True:
            primaries = [p for p in ports if _in_recovery_or_none(ha_stack, p) is False]
            assert len(primaries) <= 1, "two primaries without a DCS quorum"
            if not primaries:
                break   # the leader demoted itself
            assert time.monotonic() < deadline, "the leader kept accepting writes without a DCS quorum"
            time.sleep(0.5)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert _wait(lambda: _write(ha_stack, "quorum back"), 60, "writes once the quorum is back")
    assert len([p for p in ports if _in_recovery_or_none(ha_stack, p) is False]) == 1


def _in_recovery_or_none(stack, port: int) -> bool | None:
    try:
        return _in_recovery(stack, port)
    except psycopg.Error:
        return None   # restarting (demotion): not a primary


def test_kill9_leader_node_fails_over_and_returns_as_replica(ha_stack):
    """`ragops drill run auto-failover`: under write load through the router, kill -9 of the leader's
    Patroni and postmaster, no ragops command; the other node leads, the service writes through the
    router, the killed node streams again as a replica by itself."""
    _healthy(ha_stack)
    from ragops.config import load_config
    from ragops.pg import pgctl

    config = load_config(ha_stack.config_path)
    old = _ha(ha_stack)["leader"]
    other = "primary" if old == "replica1" else "replica1"
    proc = ha_stack.cli("--yes", "--output", "json", "drill", "run", "auto-failover", timeout=600)
    if proc.returncode != 0:
        from ragops.process import tail

        supervisor = (ha_stack.state_dir / "deploy" / "supervisor.json").read_text()
        raise AssertionError(f"drill failed: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\nsupervisor: {supervisor}\n"
                             f"{tail(ha_stack.state_dir / 'logs' / f'patroni-{old}.log', 40)}")
    report = json.loads(proc.stdout)
    print(f"drill: RTO {report['rto']['seconds']}s, RPO {report['rpo']['seconds']}s")
    assert report["rpo"]["seconds"] == 0.0       # no acknowledged write missing on the new leader
    # fast release: without it the dead leader's key alone outlives the kill by the ttl
    assert report["rto"]["seconds"] < config.database.patroni.ttl
    ha = _ha(ha_stack)
    assert ha["leader"] == other and _member(ha, old)["state"] == "streaming"
    doc = _write(ha_stack, "after the drill")
    assert doc
    port = pgctl.managed_node(config, old).port
    _wait(lambda: _count_on(ha_stack, port, [doc]) == 1, 10, "the new row on the rejoined node")


def test_wal_archive_follows_the_leader(ha_stack):
    """The WAL archive is on under Patroni too: whichever node leads archives into the one spool and the
    shipper sends it on. After the switchover and the kill -9 failover above, the archive holds the
    newest timeline's segments with no gap, so a point-in-time restore can cross both promotions."""
    _healthy(ha_stack)
    leader = _ha(ha_stack)["leader"]
    timeline = _member(_ha(ha_stack), leader)["timeline"]
    assert timeline >= 2, "the earlier tests promoted at least once"
    from ragops.config import load_config
    from ragops.pg import pgctl

    password = (ha_stack.state_dir / "secrets" / "db-password").read_text().strip()
    port = pgctl.managed_node(load_config(ha_stack.config_path), leader).port
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres "
                         "connect_timeout=3", autocommit=True) as conn:
        switched = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]

    def archived():
        proc = ha_stack.cli("--output", "json", "backup", "wal", "check")
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
        return report if proc.returncode == 0 and report.get("newest_segment", "") >= switched else None

    report = _wait(archived, 60, f"{switched} in the archive")
    assert int(report["newest_segment"][:8], 16) == timeline and report["gaps"] == []


def test_region_failover_goes_through_patroni(ha_stack):
    """`ragops failover` (the region path) with Patroni in charge: ragops fences nothing and promotes
    nothing itself; it asks Patroni, then the service writes through the router to the new leader and
    the old leader follows it."""
    _healthy(ha_stack)
    old = _ha(ha_stack)["leader"]
    other = "primary" if old == "replica1" else "replica1"
    proc = ha_stack.cli("--output", "json", "--yes", "failover", timeout=300, check=True)
    report = json.loads(proc.stdout)
    assert report["old_primary"] == old and report["new_primary"] == other
    steps = {s["name"]: s["detail"] for s in report["steps"]}
    assert "Patroni fences" in steps["fence old primary"] and "Patroni failover" in steps["promote replica"]
    assert _ha(ha_stack)["leader"] == other
    assert _wait(lambda: _write(ha_stack, "after the region failover"), 30, "writes through the router")
    _wait(lambda: _whole(ha_stack), 90, f"{old} to follow {other}")
