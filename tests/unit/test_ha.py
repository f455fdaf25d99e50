"""database.ha: patroni without processes: settings, the Patroni config ragops writes, the
supervisor's restart rule, the verbs' refusals (the real cluster: tests/integration/test_patroni.py)."""
from __future__ import annotations

import pytest

from ragops.config import load_config
from ragops.devstack import write_local_config
from ragops.errors import ConfigError, GateFailed


def _config(tmp_path, **patroni):
    extra = {"database": {"ha": "patroni", "patroni": {"rest_port": 9440, "etcd_port": 9450, **patroni}}}
    return load_config(write_local_config(tmp_path, extra=extra))


def test_ttl_below_patronis_floor_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"database\.patroni\.ttl"):
        _config(tmp_path, ttl=10)


def test_default_is_manual(tmp_path):
    from ragops.db.bringup import database_manager

    assert database_manager(load_config(write_local_config(tmp_path))) is None
    assert database_manager(_config(tmp_path)).kind == "patroni"


def test_patroni_config_loopback_authenticated_three_etcd_members(tmp_path, monkeypatch):
    from ragops.ha import patroni
    from ragops.pg import pgctl

    monkeypatch.setattr(pgctl.Node, "pg", lambda self, name: f"/opt/pg/bin/{name}")
    config = _config(tmp_path, ttl=20, loop_wait=1, retry_timeout=3)
    node = patroni.find(config, "replica1")
    data = patroni.node_config(config, node, "pw")
    assert data["restapi"]["listen"] == "127.0.0.1:9441"
    assert data["restapi"]["authentication"]["username"] == "ragops"
    assert data["restapi"]["authentication"]["password"]
    assert data["etcd3"]["hosts"] == ["127.0.0.1:9450", "127.0.0.1:9452", "127.0.0.1:9454"]
    assert data["bootstrap"]["dcs"]["ttl"] == 20 and data["bootstrap"]["dcs"]["loop_wait"] == 1
    assert data["postgresql"]["listen"] == f"127.0.0.1:{config.database.replicas[0].port}"
    assert data["postgresql"]["bin_dir"] == "/opt/pg/bin"
    assert all(rule.endswith("scram-sha-256") for rule in data["postgresql"]["pg_hba"])


def test_supervisor_waits_while_the_leader_key_names_the_dead_node(tmp_path, monkeypatch):
    """A dead node (Patroni and postmaster) whose key still lives is reported down (its outage is
    counted) but not restarted; a Patroni that died alone, its postmaster running, comes back at once."""
    from ragops.ha import manager as manager_mod
    from ragops.ha import patroni
    from ragops.pg import pgctl
    from ragops.process import ManagedProcess

    config = _config(tmp_path)
    m = manager_mod.PatroniDatabase(config)
    running = {"etcd1", "etcd2", "etcd3", "patroni-replica1", "db-endpoint", "watchdog-primary", "watchdog-replica1"}
    monkeypatch.setattr(ManagedProcess, "running", lambda self: self.name in running)
    from ragops.ha import watchdog

    postmasters: dict[str, int] = {}
    monkeypatch.setattr(pgctl.Node, "pid", lambda self: postmasters.get(self.name))
    monkeypatch.setattr(watchdog, "_alive", lambda pid: True)
    view = {"members": [{"name": "primary", "role": "leader"}, {"name": "replica1", "role": "replica"}]}
    monkeypatch.setattr(patroni, "cluster", lambda c: view)

    def restartable():
        return [name for name, restart in m.dead_components() if restart is not None]

    assert m.dead_components() == [("patroni-primary", None)]   # its key still lives: down, no restart yet
    assert restartable() == []
    postmasters["primary"] = 4242                                # Patroni alone died: back at once
    assert restartable() == ["patroni-primary"]
    postmasters.clear()
    view["members"] = [{"name": "replica1", "role": "replica"}]
    assert restartable() == []                                   # key expired, nobody leads yet: still wait
    manager_mod._LEADERLESS_SINCE[patroni.scope(config)] -= 31   # nobody took it for 3 loops
    assert restartable() == ["patroni-primary"]
    view["members"] = [{"name": "replica1", "role": "leader"}]
    assert restartable() == ["patroni-primary"]   # another leads: rejoin
    running.discard("etcd2")
    running.discard("db-endpoint")
    running.discard("watchdog-replica1")
    assert restartable() == ["etcd2", "db-endpoint", "watchdog-replica1", "patroni-primary"]


def test_promote_refused_while_a_healthy_leader_runs(tmp_path, monkeypatch):
    from ragops.ha import patroni, verbs

    config = _config(tmp_path)
    monkeypatch.setattr(patroni, "leader", lambda c: "primary")
    calls = []
    monkeypatch.setattr(patroni, "any_rest", lambda c: calls.append(c))
    with pytest.raises(GateFailed, match="healthy leader"):
        verbs.failover(config, "replica1")
    assert calls == []
    with pytest.raises(ConfigError, match="already the leader"):
        verbs.failover(config, "primary", force=True)


@pytest.mark.parametrize("pairs, message", [
    (["ttl=10"], "ttl"), (["wal_level=minimal"], "KEY one of"), (["loop_wait=x"], "integer"),
    (["synchronous_mode=yes"], "true or false"), (["ttl"], "KEY=VALUE")])
def test_ha_config_changes_are_validated_before_anything_changes(pairs, message):
    from ragops.ha.verbs import parse_changes

    with pytest.raises(ConfigError, match=message):
        parse_changes(pairs)


def test_ha_config_changes_parse():
    from ragops.ha.verbs import parse_changes

    assert parse_changes(["ttl=25", "synchronous_mode=true"]) == {"ttl": 25, "synchronous_mode": True}


def test_db_ha_needs_patroni(tmp_path):
    import subprocess
    import sys

    path = write_local_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(path), "db", "ha", "config"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "database.ha" in proc.stderr


def test_fast_release_needs_both_processes_gone(tmp_path, monkeypatch):
    from ragops.ha import fast_release
    from ragops.pg import pgctl
    from ragops.process import ManagedProcess

    config = _config(tmp_path)
    calls = []

    def post(etcd, path, body):
        calls.append(path)
        if path == "/v3/kv/range":
            return {"kvs": [{"value": fast_release._b64("primary"), "mod_revision": "7"}]}
        return {"succeeded": True}

    monkeypatch.setattr(fast_release, "_post", post)
    alive = {"patroni": 1, "postmaster": 2}
    monkeypatch.setattr(ManagedProcess, "pid", lambda self: alive["patroni"])
    monkeypatch.setattr(pgctl.Node, "pid", lambda self: alive["postmaster"])
    assert fast_release.release_dead_leader(config) is None          # running (or frozen): no proof
    alive["patroni"] = None
    assert fast_release.release_dead_leader(config) is None          # its postmaster still exists
    assert calls == ["/v3/kv/range", "/v3/kv/range"]
    alive["postmaster"] = None
    assert fast_release.release_dead_leader(config) == "primary"
    assert calls[-1] == "/v3/kv/txn"


def test_fast_release_is_off_by_default(tmp_path):
    assert _config(tmp_path).database.ha_fast_release is False


def test_region_failover_with_patroni_leaves_fencing_and_promotion_to_it(tmp_path, monkeypatch):
    """`ragops failover` when Patroni already promoted the target by itself: no ragops fencing or
    pg_promote, the promote step says so (DNS and service steps are the usual ones)."""
    from ragops import failover
    from ragops.db import replication as repl
    from ragops.db.replication import NodeStatus
    from ragops.ha import patroni

    extra = {"database": {"ha": "patroni"}, "regions": {"primary": {"database_node": "primary"},
                                                        "secondary": {"database_node": "replica1"}}}
    config = load_config(write_local_config(tmp_path, extra=extra))
    statuses = [NodeStatus("primary", "127.0.0.1", 1, "unreachable"),
                NodeStatus("replica1", "127.0.0.1", 2, "primary", reachable=True, timeline=2, current_lsn="0/1")]
    monkeypatch.setattr(repl, "topology", lambda c: statuses)
    monkeypatch.setattr(failover, "measure_rpo", lambda c, t, o: (None, None, "not measured"))
    monkeypatch.setattr(patroni, "leader", lambda c: "replica1")
    monkeypatch.setattr(repl, "fence", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ragops fenced")))
    monkeypatch.setattr(repl, "promote", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ragops promoted")))
    run = failover._RegionFailover(config, "secondary", None, False, None)
    run.fence()
    run.promote()
    steps = {s.name: s.detail for s in run.report.steps}
    assert "Patroni fences" in steps["fence old primary"]
    assert steps["promote replica"] == "replica1 already leads (Patroni failed over by itself)"


class _FakeRest:
    """One node's REST API answering POSTs from a script; records who was asked."""

    def __init__(self, name, answers, asked):
        self.name, self.answers, self.asked = name, answers, asked

    def call(self, method, path, body=None, timeout=5):
        self.asked.append((self.name, path))
        return self.answers.pop(0)


def test_switchover_asks_again_through_the_other_node_when_patroni_cannot_write_to_etcd(tmp_path, monkeypatch):
    """A frozen etcd member makes the asked Patroni answer 503 "failed to write failover key into DCS":
    that is not a refusal; the next node's API is asked and the switchover goes through."""
    from ragops.ha import patroni, verbs

    config = _config(tmp_path)
    asked: list = []
    answers = [(503, "failed to write failover key into DCS"), (200, 'Successfully switched over to "replica1"')]
    monkeypatch.setattr(patroni, "rest_of", lambda c, attempt: _FakeRest(["primary", "replica1"][attempt % 2],
                                                                        answers, asked))
    led = {"now": "primary"}
    monkeypatch.setattr(verbs, "_members", lambda c: {
        "primary": {"role": "leader" if led["now"] == "primary" else "replica", "state": "running"},
        "replica1": {"role": "leader" if led["now"] == "replica1" else "replica",
                     "state": "running" if led["now"] == "replica1" else "streaming"}})
    monkeypatch.setattr(patroni, "leader", lambda c: led["now"])
    monkeypatch.setattr(patroni, "find", lambda c, n: n)
    monkeypatch.setattr(patroni, "wait_for", lambda pred, timeout, what, interval=0.2: pred() or
                        (_ for _ in ()).throw(verbs.OperationFailed(f"timed out waiting for {what}")))
    said: list[str] = []
    real_call = _FakeRest.call

    def call_and_switch(self, method, path, body=None, timeout=5):
        status, answer = real_call(self, method, path, body, timeout)
        if status == 200:
            led["now"] = "replica1"
        return status, answer

    monkeypatch.setattr(_FakeRest, "call", call_and_switch)
    result = verbs.switchover(config, "replica1", timeout=30, progress=said.append)
    assert asked == [("primary", "/switchover"), ("replica1", "/switchover")]
    assert result.previous_leader == "primary" and "Successfully" in result.detail
    assert any("could not write to etcd" in line for line in said)


def test_switchover_refusal_other_than_503_is_not_retried(tmp_path, monkeypatch):
    from ragops.errors import OperationFailed
    from ragops.ha import patroni, verbs

    config = _config(tmp_path)
    asked: list = []
    monkeypatch.setattr(patroni, "rest_of", lambda c, attempt: _FakeRest(
        "primary", [(412, "candidate name does not match with sync_standby")], asked))
    monkeypatch.setattr(patroni, "leader", lambda c: "primary")
    monkeypatch.setattr(patroni, "find", lambda c, n: n)
    monkeypatch.setattr(verbs, "_members", lambda c: {"primary": {"role": "leader", "state": "running"},
                                                      "replica1": {"role": "replica", "state": "streaming"}})
    with pytest.raises(OperationFailed, match=r"refused the switchover \(412\)"):
        verbs.switchover(config, "replica1", timeout=30)
    assert len(asked) == 1


def test_patroni_and_etcd_ports_are_in_the_collision_check(tmp_path):
    """Node 1's REST API (rest_port + 1) on the router's port, or an etcd peer on a database port, is
    a config error naming both keys, before anything starts."""
    import yaml

    path = write_local_config(tmp_path, extra={"database": {"ha": "patroni"}})
    data = yaml.safe_load(path.read_text())
    env = data["environments"][data["default_env"]]
    router_port = int(env["router"]["listen"].rsplit(":", 1)[1])
    primary_port = env["database"]["primary"]["port"]
    for patroni, message in [({"rest_port": router_port - 1}, r"database\.patroni\.rest_port\+1 and router\.listen"),
                             ({"etcd_port": primary_port - 3},
                              r"database\.patroni\.etcd_port\+3 and database\.primary\.port")]:
        env["database"]["patroni"] = patroni
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_patroni_nodes_archive_wal_into_the_spool_and_db_recover_is_refused(tmp_path, monkeypatch):
    from ragops.errors import UsageError
    from ragops.ha import patroni
    from ragops.pitr import recover
    from ragops.pitr.wal import spool_dir

    config = _config(tmp_path)
    node = patroni.nodes(config)[1]
    params = patroni.node_config(config, node, "pw")["postgresql"]["parameters"]
    assert params["archive_mode"] == "on" and str(spool_dir(config)) in params["archive_command"]
    with pytest.raises(UsageError, match="Patroni manages the nodes"):
        recover.recover(config, "2026-01-01T00:00:00Z")
