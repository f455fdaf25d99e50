"""Operation actions call the real ragops functions with arguments their real signatures accept.

Each operation is replaced by a stub that binds the call against the real function's signature
(functools.wraps keeps it), so a renamed or removed keyword fails here; the stub returns the real
result dataclass. The end-to-end runs on real processes are in tests/integration/."""
from __future__ import annotations

import functools
import importlib
import inspect

import pytest

from ragops.config import load_config
from ragops.runbook.engine import Engine

calls: list = []


def stub(monkeypatch, spec: str, result):
    module_name, func_name = spec.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, func_name)
    signature = inspect.signature(real)

    @functools.wraps(real)
    def fake(*args, **kwargs):
        signature.bind(*args, **kwargs)          # TypeError on any argument the real one refuses
        calls.append((spec, args, kwargs))
        return result(*args, **kwargs) if callable(result) else result
    monkeypatch.setattr(module, func_name, fake)


@pytest.fixture
def config(tmp_path):
    calls.clear()
    path = tmp_path / "ragops.yaml"
    path.write_text(f"""
project: optest
default_env: test
environments:
  test:
    state_dir: {tmp_path / 'state'}
    runbooks: {{strict: false}}
    regions:
      primary: {{database_node: primary}}
      secondary: {{database_node: replica1}}
""")
    return load_config(path)


def run(config, tmp_path, body: str, **kw):
    books = tmp_path / "books"
    books.mkdir(exist_ok=True)
    (books / "t.yaml").write_text(body)
    engine = Engine(config, dirs=[books], **kw)
    return engine.run(engine.load("t"), {})


def test_region_failover_runbook_against_the_real_signatures(config, tmp_path, monkeypatch):
    from ragops.db.replication import NodeStatus
    from ragops.failover import FailoverReport

    stub(monkeypatch, "ragops.db.replication:topology",
         [NodeStatus(name="primary", host="127.0.0.1", port=1, role="primary", reachable=True),
          NodeStatus(name="replica1", host="127.0.0.1", port=2, role="replica", reachable=True, lag_bytes=0)])
    report = FailoverReport(environment="test", from_region="primary", to_region="secondary", old_primary="primary",
                            new_primary="replica1", started_at="2026-01-01T00:00:00+00:00", failure_time=None,
                            rto_seconds=12.5, rto_service_seconds=20.0, rpo_seconds=0.0, rpo_bytes=0,
                            smoke={"passed": True}, passed=True)
    stub(monkeypatch, "ragops.failover:region_failover", report)
    from pathlib import Path

    result = run(config, tmp_path, (Path(__file__).resolve().parents[2] / "runbooks" / "region-failover.yaml")
                 .read_text().replace("name: region-failover", "name: t"), approvals=["confirm"])
    assert result.exit_code == 0, result.error
    assert result.outputs == {"rto_seconds": 12.5, "rpo_seconds": 0.0}
    spec, args, kwargs = calls[-1]
    assert spec == "ragops.failover:region_failover" and kwargs["to"] == "secondary" and "progress" in kwargs


def test_failover_drill_takes_rto_and_rpo_from_the_report(config, tmp_path, monkeypatch):
    from ragops.drill import run_drill
    from ragops.failover import FailoverReport

    stub(monkeypatch, "ragops.db.replication:topology", [])
    stub(monkeypatch, "ragops.failover:region_failover", FailoverReport(
        environment="test", from_region="primary", to_region="secondary", old_primary="primary",
        new_primary="replica1", started_at="x", failure_time=None, rto_seconds=5.0, rto_service_seconds=1200.0,
        rpo_seconds=2.0, passed=True))
    engine = Engine(config)
    report = run_drill(config, "failover", engine=engine, report_dir=tmp_path / "r")
    assert report["rto"]["seconds"] == 1200.0 and report["rto"]["met"] is False      # slo default 900 s
    assert report["rpo"]["seconds"] == 2.0 and report["rpo"]["met"] is True
    assert report["exit_code"] == 3


@pytest.mark.parametrize("action, params, spec, result", [
    ("db.promote", {"node": "replica1", "max_lag": 1024, "force": True}, "ragops.db.replication:promote",
     {"node": "replica1", "timeline": 2}),
    ("dns.failover", {"to": "secondary"}, "ragops.dns.registry:failover", {"status": "INSYNC"}),
    ("deploy", {"version": "v9", "strategy": "canary", "steps": "10,50,100", "step_pause": "1s", "pause_at": 50},
     "ragops.deploy.engine:deploy", {"result": "succeeded", "version": "v9"}),
    ("rollback", {"to_version": "v1"}, "ragops.deploy.engine:rollback", {"result": "succeeded"}),
    ("backup.create", {"label": "x"}, "ragops.backup.create:create_backup", {"id": "b1"}),
    ("backup.verify", {"backup_id": "b1", "restore": True}, "ragops.backup.verify:verify_backup",
     {"backup_id": "b1", "ok": True}),
    ("backup.restore", {"backup_id": "b1", "target_db": "scratch", "clean": True, "create": False},
     "ragops.backup.restore:restore_backup", {"backup_id": "b1"}),
    ("backup.check", {"max_age": "26h"}, "ragops.backup.metrics:check_backups", {"ok": True, "age_seconds": 5}),
    ("backup.show", {"backup_id": "latest"}, "ragops.backup.catalog:show_backup",
     {"manifest": {"id": "b1", "row_counts": {"documents": 3}}}),
    ("db.migrate", {"dsn": "host=x", "migrations_dir": "/tmp"}, "ragops.pg.migrate:apply_migrations", ["0001.sql"]),
    ("smoke", {"color": "blue", "expect_version": "v1"}, "ragops.smoke:run_smoke", {"passed": True, "checks": []}),
    ("loadtest", {"rps": 4, "duration": "2s", "url": "http://x", "api_key": "k", "path": "/healthz",
                  "max_p95_ms": 100}, "ragops.loadgen:run_load", {"rps": 4.0, "p95_ms": 3.0, "error_rate": 0.0}),
])
def test_each_operation_action_binds_to_the_real_signature(config, tmp_path, monkeypatch, action, params, spec, result):
    import yaml

    monkeypatch.setattr("ragops.db.connect.db_password", lambda config: "pw")
    stub(monkeypatch, spec, result)
    body = yaml.safe_dump({"name": "t", "description": "d",
                           "steps": [{"id": "op", "name": "op", "action": action, "with": params}]})
    outcome = run(config, tmp_path, body)
    assert outcome.exit_code == 0, outcome.error
    assert calls and calls[-1][0] == spec


def test_deploy_rolled_back_is_a_failed_gate(config, tmp_path, monkeypatch):
    stub(monkeypatch, "ragops.deploy.engine:deploy", {"result": "rolled_back", "version": "v2",
                                                      "reason": "error rate 30% above 5%"})
    body = "name: t\ndescription: d\nsteps:\n  - {id: d, name: d, action: deploy, with: {version: v2}}\n"
    outcome = run(config, tmp_path, body)
    assert outcome.exit_code == 3 and "rolled_back (error rate 30% above 5%)" in outcome.error


def test_failed_backup_verification_is_a_failed_gate(config, tmp_path, monkeypatch):
    from ragops.backup.checks import Check
    from ragops.backup.verify import VerifyResult

    stub(monkeypatch, "ragops.backup.verify:verify_backup",
         VerifyResult("b1", False, False, "now", 0.1, [Check("sha256", False, "digest mismatch")]))
    body = "name: t\ndescription: d\nsteps:\n  - {id: v, name: v, action: backup.verify}\n"
    outcome = run(config, tmp_path, body)
    assert outcome.exit_code == 3 and "digest mismatch" in outcome.error
