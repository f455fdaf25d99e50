"""The leader-aware endpoint, the fence watchdog, ha_sync, the live status and down/up's leader record
without a cluster (the real one: tests/integration/test_ha_matrix.py)."""
from __future__ import annotations

import subprocess
import time

import pytest

from ragops.config import load_config
from ragops.devstack import write_local_config


def _config(tmp_path, database=None, **patroni):
    extra = {"database": {"ha": "patroni", **(database or {}),
                          "patroni": {"rest_port": 9440, "etcd_port": 9450, **patroni}}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return load_config(write_local_config(tmp_path, extra=extra))


def test_endpoint_checks_get_primary_on_each_patroni_well_under_loop_wait(tmp_path):
    from ragops.ha import endpoint

    config = _config(tmp_path, loop_wait=1)
    text = endpoint.render(config)
    assert "bind 127.0.0.1:9456" in text                      # etcd_port + 6 by default
    assert "option httpchk GET /primary" in text and "http-check expect status 200" in text
    assert "on-marked-down shutdown-sessions" in text and "balance first" in text
    assert f"server primary 127.0.0.1:{config.database.primary.port} check port 9440" in text
    assert f"server replica1 127.0.0.1:{config.database.replicas[0].port} check port 9441" in text
    # a frozen Patroni (its TCP accepts, nothing answers) is out after two timed-out checks: ~2.5 s
    worst = (endpoint.CHECK_INTER_MS + endpoint.CHECK_TIMEOUT_MS + endpoint.CHECK_FAST_INTER_MS
             + endpoint.CHECK_TIMEOUT_MS) / 1000
    assert worst < 3 < config.database.patroni.ttl


def test_haproxy_accepts_the_endpoint_config(tmp_path):
    import shutil

    from ragops.ha import endpoint

    haproxy = shutil.which("haproxy")
    if haproxy is None:
        from tests.conftest import need

        need(False, "haproxy (apt-get install haproxy)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(endpoint.render(_config(tmp_path)))
    proc = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_service_and_migrations_go_through_the_endpoint(tmp_path):
    from ragops.db.connect import app_dsn

    dsn = app_dsn(_config(tmp_path / "ha"))
    assert "port=9456" in dsn and "target_session_attrs" not in dsn
    (tmp_path / "manual").mkdir()
    manual = app_dsn(load_config(write_local_config(tmp_path / "manual")))
    assert "target_session_attrs=read-write" in manual


def test_endpoint_port_is_in_the_collision_check(tmp_path):
    import yaml

    from ragops.errors import ConfigError

    path = write_local_config(tmp_path, extra={"database": {"ha": "patroni"}})
    data = yaml.safe_load(path.read_text())
    env = data["environments"][data["default_env"]]
    env["database"]["patroni"] = {"endpoint_port": env["database"]["primary"]["port"]}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"database\.patroni\.endpoint_port and database\.primary\.port"):
        load_config(path)


@pytest.mark.parametrize(("ttl", "loop_wait"), [(20, 1), (30, 10), (20, 3), (60, 10)])
def test_the_fence_comes_before_the_key_can_expire(tmp_path, ttl, loop_wait):
    """The key expires `ttl` after its last renewal, which was at most loop_wait before Patroni's last
    answer: silence + one poll + the whole shutdown must end before ttl - loop_wait."""
    from ragops.ha import watchdog

    config = _config(tmp_path, ttl=ttl, loop_wait=loop_wait)
    after = watchdog.fence_after(config)
    assert after >= watchdog.MIN_FENCE_AFTER
    assert after + watchdog.POLL + watchdog.SHUTDOWN_SECONDS < ttl - loop_wait


def test_fence_stops_a_process_fast_then_immediate(tmp_path):
    from ragops.ha import watchdog

    ignores_int = subprocess.Popen(["python3", "-c", "import signal,time; signal.signal(signal.SIGINT, "
                                    "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                                   stdout=subprocess.PIPE, text=True)
    assert ignores_int.stdout is not None and ignores_int.stdout.readline().strip() == "ready"
    started = time.monotonic()
    how = watchdog.stop_postmaster(ignores_int.pid)
    ignores_int.wait(5)
    assert how == "immediate" and time.monotonic() - started < watchdog.SHUTDOWN_SECONDS + 1


def test_watchdog_fences_only_a_primary_whose_patroni_is_silent(tmp_path, monkeypatch):
    """Silent Patroni + a postmaster without standby.signal: stopped once, and recorded; a replica's
    postmaster (standby.signal) is left alone."""
    from ragops.ha import watchdog
    from ragops.pg import pgctl

    config = _config(tmp_path)
    stopped: list[int] = []
    monkeypatch.setattr(watchdog, "fence_after", lambda c: 0.2)
    monkeypatch.setattr(watchdog, "answers", lambda url, timeout=1.0: False)
    monkeypatch.setattr(watchdog, "stop_postmaster", lambda pid: stopped.append(pid) or "fast")
    monkeypatch.setattr(watchdog, "POLL", 0.05)
    monkeypatch.setattr(pgctl.Node, "pid", lambda self: 4242)
    monkeypatch.setattr(watchdog, "_alive", lambda pid: True)
    data_dirs = {}

    def run(node: str, seconds: float) -> None:
        monkeypatch.setattr(watchdog.time, "sleep", _stop_after(seconds))
        with pytest.raises(_Stop):
            watchdog.watch(config, node)

    from ragops.ha import patroni

    for node in patroni.nodes(config):
        data_dirs[node.name] = node.node.data_dir
        node.node.data_dir.mkdir(parents=True, exist_ok=True)
    (data_dirs["replica1"] / "standby.signal").write_text("")
    run("replica1", 0.6)
    assert stopped == []
    run("primary", 0.6)
    assert stopped and set(stopped) == {4242}
    fences = watchdog.read_fences(config)
    assert fences[-1]["node"] == "primary" and fences[-1]["shutdown"] == "fast"


class _Stop(Exception):
    pass


_REAL_SLEEP = time.sleep


def _stop_after(seconds: float):
    end = time.monotonic() + seconds
    real_sleep = _REAL_SLEEP

    def sleep(interval: float) -> None:
        if time.monotonic() > end:
            raise _Stop
        real_sleep(interval)
    return sleep


@pytest.mark.parametrize(("mode", "sync", "strict"), [("off", False, False), ("on", True, False),
                                                       ("strict", True, True)])
def test_ha_sync_sets_patronis_synchronous_modes(tmp_path, monkeypatch, mode, sync, strict):
    from ragops.ha import patroni
    from ragops.ha.sync import GUARANTEES, mode_of
    from ragops.pg import pgctl

    monkeypatch.setattr(pgctl.Node, "pg", lambda self, name: f"/opt/pg/bin/{name}")
    config = _config(tmp_path, database={"ha_sync": mode})
    dcs = patroni.node_config(config, patroni.find(config, "primary"), "pw")["bootstrap"]["dcs"]
    assert (dcs["synchronous_mode"], dcs["synchronous_mode_strict"]) == (sync, strict)
    assert mode_of(dcs) == mode and GUARANTEES[mode]


def test_ha_sync_rejects_other_values_naming_the_key(tmp_path):
    from ragops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"database\.ha_sync"):
        _config(tmp_path, database={"ha_sync": "yes"})


@pytest.mark.parametrize(("nodes", "key", "quorum", "expected"), [
    ({"a": (True, True), "b": (True, True)}, "a", True, ["TWO NODES ACCEPT WRITES: a, b"]),
    ({"a": (False, True), "b": (True, False)}, "a", True, ["LEADER a: ITS PATRONI DOES NOT ANSWER"]),
    ({"a": (True, False), "b": (True, False)}, "a", True, ["LEADER a IS READ-ONLY"]),
    ({"a": (True, False), "b": (True, False)}, None, False, ["ETCD QUORUM LOST (1/3 healthy)"]),
    ({"a": (True, False), "b": (True, False)}, None, True, ["NO LEADER"]),
    ({"a": (True, True), "b": (True, False)}, "a", True, []),
    ({"a": (True, True), "b": (True, False)}, None, False, ["ETCD QUORUM LOST", "a ACCEPTS WRITES BUT DOES NOT"]),
])
def test_status_problems(nodes, key, quorum, expected):
    from ragops.ha.truth import problems

    live = {n: {"patroni_answers": answers, "writable": writable} for n, (answers, writable) in nodes.items()}
    found = problems(live, key, quorum, 3 if quorum else 1, 3)
    assert len(found) == len(expected)
    for text, want in zip(found, expected, strict=True):
        assert text.startswith(want)


def test_status_exits_3_and_names_the_problem_first(tmp_path, monkeypatch, capsys):
    from ragops.cli.main import main
    from ragops.ha import manager

    config_path = write_local_config(tmp_path, extra={"database": {"ha": "patroni"}})
    problem = "TWO NODES ACCEPT WRITES: primary, replica1 (split brain)"
    monkeypatch.setattr(manager.PatroniDatabase, "status", lambda self: {
        "ha": "patroni", "scope": "s", "reachable": True, "leader": "primary", "paused": False, "members": [],
        "dcs": {"members": {}, "healthy": 3, "quorum": True}, "live": {}, "leader_key": "primary",
        "problems": [problem]})
    from ragops.db import replication

    monkeypatch.setattr(replication, "topology", lambda c: [])
    code = main(["-c", str(config_path), "db", "status"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out.splitlines()[0].startswith("HA: " + problem)
    assert "split brain" in err


def test_up_starts_the_node_down_recorded_as_leader_first(tmp_path, monkeypatch):
    from ragops.ha import patroni
    from ragops.ha.leader_record import write_last_leader
    from ragops.ha.manager import PatroniDatabase
    from ragops.pg import pgctl

    config = _config(tmp_path)
    monkeypatch.setattr(pgctl.Node, "initialized", property(lambda self: True))
    m = PatroniDatabase(config)
    assert m._first_to_start(patroni.nodes(config)).name == "primary"
    write_last_leader(config, "replica1")
    assert m._first_to_start(patroni.nodes(config)).name == "replica1"
    assert "replica1 first (it led when the cluster was stopped)" in "\n".join(m.plan())
    monkeypatch.setattr(pgctl.Node, "initialized", property(lambda self: self.name != "replica1"))
    assert m._first_to_start(patroni.nodes(config)).name == "primary"   # its data is gone: not first


def test_up_dry_run_shows_etcd_patroni_endpoint_and_watchdogs(tmp_path, capsys):
    from ragops.cli.main import main

    config_path = write_local_config(tmp_path, extra={"database": {"ha": "patroni", "ha_sync": "on"}})
    assert main(["-c", str(config_path), "up", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for text in ("etcd: member etcd1", "etcd: member etcd3", "patroni: primary first", "patroni: replica1",
                 "endpoint: HAProxy on 127.0.0.1:", "watchdog: primary", "watchdog: replica1",
                 "ha_sync: on"):
        assert text in out, out
    assert "pg_basebackup" not in out


def test_supervisor_counts_an_outage_from_the_first_failed_look(tmp_path, monkeypatch):
    """A dead leader's Patroni waits (restart None) ~20 s: its outage runs from the first look, not from
    the restart; one that came back without a restart of ours ends its outage then."""
    from ragops import supervisor as sup

    class Platform:
        def journal_dir(self):
            return tmp_path

    s = sup.Supervisor(Platform())
    s.heal("patroni-primary", None)
    entry = s.component("patroni-primary")
    assert entry["down_since"] and entry["restarts"] == 0
    entry["down_at"] -= 20
    s.heal("patroni-primary", lambda: None)
    assert entry["restarts"] == 1 and entry["last_outage_s"] >= 20 and entry["down_since"] is None
    s.heal("etcd2", None)
    s.component("etcd2")["down_at"] -= 7
    s.close_outages({"patroni-primary"})
    assert s.component("etcd2")["down_since"] is None and s.component("etcd2")["last_outage_s"] >= 7


def test_up_restarts_a_supervisor_started_with_other_settings(tmp_path, monkeypatch):
    from ragops import supervisor as sup
    from ragops.platforms import get_platform

    config = _config(tmp_path)
    platform = get_platform(config)
    started: list[str] = []
    stopped: list[str] = []
    state = {"running": True}
    proc = platform.proc("supervisor")
    monkeypatch.setattr(type(proc), "running", lambda self: state["running"])
    monkeypatch.setattr(type(proc), "stop", lambda self, timeout=5: stopped.append(self.name) or
                        state.update(running=False))
    monkeypatch.setattr(type(proc), "start", lambda self, args, **kw: started.append(self.name) or
                        state.update(running=True) or 1)
    platform.run_dir.mkdir(parents=True, exist_ok=True)
    (platform.run_dir / "supervisor.config").write_text(sup.config_fingerprint(config) + "\n")
    assert sup.ensure_supervisor(platform, lambda m: None) == []
    said: list[str] = []
    changed = _config(tmp_path, database={"ha_fast_release": True})
    assert sup.ensure_supervisor(get_platform(changed), said.append) == ["restart supervisor (settings changed)"]
    assert stopped == ["supervisor"] and started == ["supervisor"]
    assert "settings changed" in said[0]


def test_drill_fault_names_are_checked_before_anything_runs(tmp_path):
    from ragops.errors import ConfigError
    from ragops.runbook.operations.ha import ha_fault

    class Ctx:
        progress = staticmethod(lambda m: None)

        def require_config(self):
            return _config(tmp_path)

    with pytest.raises(ConfigError, match=r"fault: power-cut: expected one or several of node, patroni, freeze"):
        ha_fault(Ctx(), fault="freeze,power-cut")


def test_a_zombie_postmaster_counts_as_gone():
    """kill -9 of a node: the postmaster, reparented to a pid 1 that may not reap it at once, stays a
    zombie; the supervisor must not take it for a postmaster its Patroni could take back."""
    from ragops.ha import watchdog

    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while watchdog._alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not watchdog._alive(child.pid)        # exited, not yet reaped: a zombie
    child.wait()


def test_a_member_that_missed_one_health_check_is_asked_again_before_quorum_is_called_lost(tmp_path):
    """Under load one /health can miss its 1 s deadline: status must not say QUORUM LOST for that."""
    from ragops.ha.truth import _second_look_at_etcd

    class Member:
        def __init__(self, name, healthy_on_second):
            self.name, self.healthy_on_second = name, healthy_on_second

        def healthy(self, timeout=1.0):
            assert timeout > 1.0
            return self.healthy_on_second

    class Etcd:
        def __init__(self):
            self.members = [Member("etcd1", True), Member("etcd2", True), Member("etcd3", False)]

    dcs = {"members": {"etcd1": {"healthy": False}, "etcd2": {"healthy": False}, "etcd3": {"healthy": False}},
           "healthy": 0, "quorum": False}
    _second_look_at_etcd(Etcd(), dcs)
    assert dcs["healthy"] == 2 and dcs["quorum"] is True and dcs["members"]["etcd3"]["healthy"] is False


@pytest.mark.parametrize(("kill", "faults", "expected"), [
    ({"writes_accepted_seconds": 3.1, "rpo_seconds": 0.0}, None, (3.1, 0.0)),   # the plain kill drill
    (None, {"write_pause_seconds": 21.0, "rpo_seconds": 0.4}, (21.0, 0.4)),     # -i fault=...
    ({}, None, (None, None)),                                                    # the kill step failed
])
def test_auto_failover_drill_measures_whichever_step_ran(kill, faults, expected):
    from pathlib import Path

    import yaml

    from ragops.runbook.expr import render

    drill = yaml.safe_load((Path(__file__).parents[2] / "runbooks" / "drill-auto-failover.yaml").read_text())["drill"]
    steps = {"kill": {"status": "ok" if kill is not None else "skipped", "outputs": kill or {}},
             "faults": {"status": "ok" if faults is not None else "skipped", "outputs": faults or {}}}
    assert (render(drill["rto"], {"steps": steps}), render(drill["rpo"], {"steps": steps})) == expected


def test_up_waits_for_a_writable_leader_with_progress_then_gives_up_naming_it(tmp_path, monkeypatch):
    """After quorum loss the leader is read-only for a while: up waits (saying so) instead of failing
    its migrations with 'read-only transaction'; bounded, with a one-line error."""
    from ragops.errors import OperationFailed
    from ragops.ha import endpoint

    config = _config(tmp_path)
    answers = iter([False] * 3 + [True])
    monkeypatch.setattr(endpoint, "writable", lambda c, timeout=2: next(answers))
    monkeypatch.setattr(endpoint.time, "sleep", lambda s: None)
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(endpoint.time, "monotonic", lambda: float(next(clock)))
    said: list[str] = []
    endpoint.wait_writable(config, 60, said.append)
    assert said and "waiting for a writable leader" in said[0]
    monkeypatch.setattr(endpoint, "writable", lambda c, timeout=2: False)
    with pytest.raises(OperationFailed, match="no writable leader through the database endpoint after 20s"):
        endpoint.wait_writable(config, 20, said.append)
