"""Every `ragops audit` check with a passing and a failing case, on stubbed facts (no live
environment: tests/integration/test_audit.py runs the audit against a real one)."""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ragops.audit import checks_availability as avail
from ragops.audit import checks_backups as bk
from ragops.audit import checks_edge as edge
from ragops.audit import checks_operations as ops
from ragops.audit.engine import load_checks, score, verdict_of
from ragops.audit.facts import HttpAnswer, Unobservable
from ragops.audit.model import Finding
from ragops.backup.catalog import Manifest
from ragops.config import load_config

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def config(tmp_path: Path, **env) -> object:
    base = {"platform": "local", "backups": {"storage": f"file://{tmp_path}/backups"}}
    for key, value in env.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "t", "default_env": "e", "environments": {"e": base}}))
    return load_config(path, "e")


class Facts(SimpleNamespace):
    """Stub facts: attributes as given; a missing one is Unobservable (as a source that cannot be read)."""

    def __getattr__(self, name):
        raise Unobservable(f"{name} not given")

    def age_seconds(self, iso):
        return None if iso is None else (NOW - datetime.fromisoformat(iso)).total_seconds()

    def http(self, path, method="GET", headers=None):
        return self.answers(path, method, headers or {})


def facts(cfg, **given) -> Facts:
    return Facts(config=cfg, settings=cfg.env.audit, now=NOW, **given)


def ago(**delta) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def manifest(backup_id="b1", finished=None, incremental=False, encrypted=True) -> Manifest:
    return Manifest(id=backup_id, project="t", environment="e", database="rag", server_version="16",
                    started_at=finished or ago(hours=1), finished_at=finished or ago(hours=1), duration_seconds=1,
                    wal_lsn="0/1", wal_file=None, raw_bytes=1, stored_bytes=1, sha256="x",
                    compression={}, encryption={"format": "age"} if encrypted else {}, row_counts={},
                    ragops_version="0", physical={"incremental": True} if incremental else None)


def outcome(func, f):
    return func(f).status


# ---- edge -----------------------------------------------------------------------------------

def test_api_auth(tmp_path):
    cfg = config(tmp_path)
    refused = facts(cfg, answers=lambda path, method, headers: HttpAnswer(401, {}, "{}"))
    assert outcome(edge.api_auth, refused) == "pass"
    leaky = facts(cfg, answers=lambda path, method, headers: HttpAnswer(200 if headers else 401, {}, "{}"))
    result = edge.api_auth(leaky)
    assert result.status == "fail" and "wrong key: 200" in result.observed


def test_api_auth_reads_the_routes_from_openapi(tmp_path):
    schema = {"paths": {"/api/v1/documents/{id}": {"delete": {}}, "/healthz": {"get": {}}}}

    def answers(path, method, headers):
        if path == "/openapi.json":
            return HttpAnswer(200, {}, json.dumps(schema))
        return HttpAnswer(200 if method == "DELETE" else 401, {}, "")
    result = edge.api_auth(facts(config(tmp_path), answers=answers))
    assert result.status == "fail" and "DELETE /api/v1/documents/audit-0" in result.observed


def test_security_headers(tmp_path):
    cfg = config(tmp_path)
    full = {h: "x" for h in edge.REQUIRED_HEADERS}
    assert outcome(edge.security_headers, facts(cfg, answers=lambda *a: HttpAnswer(200, full, ""))) == "pass"
    thin = {k: v for k, v in full.items() if k != "x-frame-options"}
    result = edge.security_headers(facts(cfg, answers=lambda *a: HttpAnswer(200, thin, "")))
    assert result.status == "fail" and "x-frame-options" in result.observed


def test_tls_certificate_not_configured_is_not_applicable_and_unreachable_fails(tmp_path):
    assert outcome(edge.tls_certificate, facts(config(tmp_path))) == "n/a"
    cfg = config(tmp_path, audit={"tls_url": "https://127.0.0.1:1"})
    result = edge.tls_certificate(facts(cfg))
    assert result.status == "fail" and "no TLS handshake" in result.observed


def test_rate_limit(tmp_path):
    assert outcome(edge.rate_limit, facts(config(tmp_path))) == "pass"
    assert outcome(edge.rate_limit, facts(config(tmp_path, service={"rate_limit_per_minute": 10**6}))) == "fail"


def test_cors(tmp_path):
    refused = lambda *a: HttpAnswer(400, {}, "")   # noqa: E731
    assert outcome(edge.cors, facts(config(tmp_path), answers=refused)) == "pass"
    assert outcome(edge.cors, facts(config(tmp_path, service={"cors_origins": ["*"]}), answers=refused)) == "fail"
    allowed = lambda *a: HttpAnswer(200, {"access-control-allow-origin": "*"}, "")   # noqa: E731
    assert outcome(edge.cors, facts(config(tmp_path), answers=allowed)) == "fail"


def test_secrets_in_process_args(tmp_path):
    secrets = {"database.password": "s3cret-password-value"}
    clean = facts(config(tmp_path), secret_values=secrets, processes=[{"pid": 1, "uid": 0, "args": "postgres -D x"}])
    assert outcome(edge.secrets_in_process_args, clean) == "pass"
    leaky = facts(config(tmp_path), secret_values=secrets,
                  processes=[{"pid": 7, "uid": 0, "args": "psql postgresql://rag:s3cret-password-value@h/db"}])
    result = edge.secrets_in_process_args(leaky)
    assert result.status == "fail" and "pid 7" in result.observed and "database.password" in result.observed
    assert "s3cret-password-value" not in result.observed


def test_secrets_in_state_files(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("GET /api/v1/query 401\n")
    secrets = {"api-key (state secret)": "k" * 20}
    assert outcome(edge.secrets_in_state_files, facts(config(tmp_path), secret_values=secrets, state_files=[log])) == "pass"
    log.write_text(f"GET /api/v1/query?api_key={'k' * 20} 401\n")
    result = edge.secrets_in_state_files(facts(config(tmp_path), secret_values=secrets, state_files=[log]))
    assert result.status == "fail" and str(log) in result.observed and "k" * 20 not in result.observed


def test_secret_file_modes(tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text("x")
    secret.chmod(0o600)
    f = facts(config(tmp_path), generated_secret_files=[secret], referenced_secret_files=[])
    assert outcome(edge.secret_file_modes, f) == "pass"
    secret.chmod(0o644)
    result = edge.secret_file_modes(f)
    assert result.status == "fail" and result.fix == f"chmod 600 {secret}"


def test_service_not_root(tmp_path):
    me = os.getpid()
    f = facts(config(tmp_path), status={"colors": [{"color": "blue", "running": True, "pid": me}]})
    expected = "fail" if os.geteuid() == 0 else "pass"
    assert outcome(edge.service_not_root, f) == expected
    assert outcome(edge.service_not_root, facts(config(tmp_path), status={"colors": []})) == "n/a"


def test_kubernetes_policies(tmp_path):
    assert outcome(edge.kubernetes_policies, facts(config(tmp_path))) == "n/a"
    cfg = config(tmp_path, platform="kubernetes", database={"password": "${env:PGPASSWORD}", "dsn": "${env:DSN}"},
                 service={"image": "reg/rag", "api_keys": "${env:KEYS}"},
                 backups={"encryption_key": "${env:AGE}"})
    assert outcome(edge.kubernetes_policies, facts(cfg)) == "pass"   # the rendered manifests carry both


# ---- backups ----------------------------------------------------------------------------------

def test_full_age(tmp_path):
    cfg = config(tmp_path)
    assert outcome(bk.full_age, facts(cfg, backups=[(manifest(finished=ago(hours=3)), None)])) == "pass"
    assert outcome(bk.full_age, facts(cfg, backups=[(manifest(finished=ago(hours=30)), None)])) == "fail"
    only_incremental = [(manifest(finished=ago(hours=1), incremental=True), None)]
    assert outcome(bk.full_age, facts(cfg, backups=only_incremental)) == "fail"


def test_incremental_age(tmp_path):
    cfg = config(tmp_path)
    assert outcome(bk.incremental_age, facts(cfg, backups=[(manifest(finished=ago(minutes=20)), None)])) == "pass"
    stale_wal = _coverage(newest_age=7200)
    assert outcome(bk.incremental_age, facts(cfg, backups=[(manifest(finished=ago(hours=3)), None)],
                                             coverage=stale_wal, status=primary_at("0/9000000"))) == "fail"
    off = config(tmp_path, backups={"wal": {"enabled": False}})
    assert outcome(bk.incremental_age, facts(off, backups=[(manifest(finished=ago(hours=3)), None)])) == "fail"
    wal = config(tmp_path, backups={"wal": {"enabled": True}})
    assert outcome(bk.incremental_age, facts(wal, backups=[], coverage=_coverage(newest_age=20))) == "pass"


def test_encrypted(tmp_path):
    cfg = config(tmp_path)
    assert outcome(bk.encrypted, facts(cfg, backups=[(manifest(), None)])) == "pass"
    assert outcome(bk.encrypted, facts(cfg, backups=[(manifest(encrypted=False), None)])) == "fail"
    assert outcome(bk.encrypted, facts(cfg, backups=[])) == "n/a"


def test_verified(tmp_path):
    cfg = config(tmp_path)
    good = {"ok": True, "restore": {"rows": 3}, "checked_at": ago(days=1)}
    assert outcome(bk.verified, facts(cfg, backups=[(manifest("a"), good)])) == "pass"
    stale = {**good, "checked_at": ago(days=20)}
    result = bk.verified(facts(cfg, backups=[(manifest("a"), good), (manifest("b"), stale)]))
    assert result.status == "partial" and result.credit == 0.5 and "ragops backup verify b --restore" in result.fix
    assert outcome(bk.verified, facts(cfg, backups=[])) == "fail"


def test_second_copy(tmp_path):
    assert outcome(bk.second_copy, facts(config(tmp_path), backups=[(manifest(), None)])) == "fail"
    cfg = config(tmp_path, backups={"copy_to": f"file://{tmp_path}/copy"})
    assert outcome(bk.second_copy, facts(cfg, backups=[(manifest("b1"), None)], copy_keys={"b1"})) == "pass"
    assert outcome(bk.second_copy, facts(cfg, backups=[(manifest("b1"), None)], copy_keys=set())) == "fail"


def test_retention(tmp_path):
    assert outcome(bk.retention, facts(config(tmp_path))) == "pass"
    assert outcome(bk.retention, facts(config(tmp_path, backups={"retention": {"daily_days": 7}}))) == "fail"


def primary_at(lsn: str, timeline: int = 1) -> dict:
    return {"database": [{"name": "primary", "role": "primary", "reachable": True, "current_lsn": lsn,
                          "timeline": timeline}]}


def _coverage(gaps=(), newest_age=10, base=True):
    newest = SimpleNamespace(name="000000010000000000000005", timeline=1, segno=5,
                             stored_at=NOW - timedelta(seconds=newest_age))
    return SimpleNamespace(newest=newest, segments=[newest], gaps=list(gaps), newest_time=lambda: newest.stored_at,
                           oldest_recoverable=lambda: ago(hours=2) if base else None)


def test_wal_archive(tmp_path):
    cfg = config(tmp_path, backups={"wal": {"enabled": True}})
    assert outcome(bk.wal_archive, facts(cfg, coverage=_coverage())) == "pass"
    assert outcome(bk.wal_archive, facts(cfg, coverage=_coverage(gaps=["000000010000000000000003"]))) == "fail"
    # an old newest segment: current when the primary is still inside the next one (an idle database),
    # behind when it has written segments since that were never archived
    assert outcome(bk.wal_archive, facts(cfg, coverage=_coverage(newest_age=3600), status=primary_at("0/6000100"))) == "pass"
    behind = bk.wal_archive(facts(cfg, coverage=_coverage(newest_age=3600), status=primary_at("0/9000000")))
    assert behind.status == "fail" and "3.0 segments past" in behind.observed
    assert outcome(bk.wal_archive, facts(config(tmp_path, backups={"wal": {"enabled": False}}))) == "fail"


def test_pitr_window(tmp_path):
    cfg = config(tmp_path, backups={"wal": {"enabled": True}})
    assert outcome(bk.pitr_window, facts(cfg, coverage=_coverage())) == "pass"
    assert outcome(bk.pitr_window, facts(cfg, coverage=_coverage(base=False))) == "fail"
    assert outcome(bk.pitr_window, facts(cfg, coverage=_coverage(newest_age=900), status=primary_at("0/A000000"))) == "fail"
    slow = config(tmp_path, backups={"wal": {"enabled": True, "archive_timeout": "10m"}})
    assert outcome(bk.pitr_window, facts(slow, coverage=_coverage())) == "fail"


def test_restored_copies_inert(tmp_path):
    cfg = config(tmp_path, state_dir=str(tmp_path / "state"))
    copy = tmp_path / "state" / "restore-1"
    (copy / "global").mkdir(parents=True)
    (copy / "PG_VERSION").write_text("16")
    (copy / "postgresql.auto.conf").write_text("archive_mode = 'off'\n")
    assert outcome(bk.restored_copies_inert, facts(cfg)) == "pass"
    (copy / "postgresql.auto.conf").write_text("archive_mode = 'on'\narchive_command = 'cp %p /archive/%f'\n")
    result = bk.restored_copies_inert(facts(cfg))
    assert result.status == "fail" and str(copy) in result.observed


# ---- availability -----------------------------------------------------------------------------

def node(name, role="replica", **extra):
    return {"name": name, "role": role, "reachable": True, **extra}


def test_database_nodes(tmp_path):
    cfg = config(tmp_path)
    good = {"database": [node("primary", "primary"), node("replica1", streaming=True)]}
    assert outcome(avail.database_nodes, facts(cfg, status=good)) == "pass"
    split = {"database": [node("primary", "primary"), node("replica1", "primary")]}
    result = avail.database_nodes(facts(cfg, status=split))
    assert result.status == "fail" and "2 writable primaries" in result.observed
    down = {"database": [node("primary", "primary"), {"name": "replica1", "role": "unreachable", "reachable": False}]}
    assert "unreachable: replica1" in avail.database_nodes(facts(cfg, status=down)).observed


def test_replica_lag(tmp_path):
    cfg = config(tmp_path)
    ok = {"database": [node("primary", "primary"), node("replica1", lag_bytes=1000, streaming=True)]}
    assert outcome(avail.replica_lag, facts(cfg, status=ok)) == "pass"
    warn = {"database": [node("primary", "primary"), node("replica1", lag_bytes=100 * 2**20, streaming=True)]}
    assert outcome(avail.replica_lag, facts(cfg, status=warn)) == "partial"
    crit = {"database": [node("primary", "primary"), node("replica1", lag_bytes=600 * 2**20, streaming=True)]}
    assert outcome(avail.replica_lag, facts(cfg, status=crit)) == "fail"
    stopped = {"database": [node("primary", "primary"), node("replica1", streaming=False, lag_bytes=None)]}
    assert outcome(avail.replica_lag, facts(cfg, status=stopped)) == "fail"


def test_replication_slots(tmp_path):
    cfg = config(tmp_path)
    primary = node("primary", "primary", current_lsn="2/0",
                   slots=[{"name": "replica1", "active": True, "restart_lsn": "1/0"}])
    assert outcome(avail.replication_slots, facts(cfg, status={"database": [primary]})) == "pass"
    primary["slots"] = [{"name": "gone", "active": False, "restart_lsn": "0/0"}]
    result = avail.replication_slots(facts(cfg, status={"database": [primary]}))
    assert result.status == "fail" and "pg_drop_replication_slot('gone')" in result.fix


def test_patroni_timing(tmp_path):
    assert outcome(avail.patroni_timing, facts(config(tmp_path))) == "n/a"
    good = config(tmp_path, database={"ha": "patroni", "patroni": {"ttl": 30, "loop_wait": 10, "retry_timeout": 9}})
    assert outcome(avail.patroni_timing, facts(good)) == "pass"
    bad = config(tmp_path, database={"ha": "patroni", "patroni": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}})
    assert outcome(avail.patroni_timing, facts(bad)) == "fail"


def test_replication_mode(tmp_path):
    assert outcome(avail.replication_mode, facts(config(tmp_path, database={"synchronous": True}))) == "pass"
    lagging = {"database": [node("primary", "primary"), node("replica1", lag_seconds=900.0)]}
    assert outcome(avail.replication_mode, facts(config(tmp_path), status=lagging)) == "fail"
    keeping_up = {"database": [node("primary", "primary"), node("replica1", lag_seconds=0.5)]}
    assert outcome(avail.replication_mode, facts(config(tmp_path), status=keeping_up)) == "pass"


def test_deploy_lock(tmp_path):
    cfg = config(tmp_path)
    assert outcome(avail.deploy_lock, facts(cfg, status={"lock": None})) == "pass"
    lock = {"owner": "ops", "host": "h", "pid": 9, "command": "deploy v2", "created": ago(hours=2)}
    assert outcome(avail.deploy_lock, facts(cfg, status={"lock": lock, "lock_stale": False})) == "pass"
    result = avail.deploy_lock(facts(cfg, status={"lock": lock, "lock_stale": True}))
    assert result.status == "fail" and "deploy v2" in result.observed


def test_rollback_ready(tmp_path):
    cfg = config(tmp_path)
    live = {"color": "blue", "weight": 100, "running": True, "healthy": True, "version": "v2"}
    warm = {"color": "green", "weight": 0, "running": True, "healthy": True, "version": "v1"}
    assert outcome(avail.rollback_ready, facts(cfg, status={"colors": [live, warm], "last_deploy": {}})) == "pass"
    assert outcome(avail.rollback_ready, facts(cfg, status={"colors": [live], "last_deploy": {"id": "d"}})) == "fail"
    assert outcome(avail.rollback_ready, facts(cfg, status={"colors": [live], "last_deploy": None})) == "n/a"
    assert outcome(avail.rollback_ready, facts(config(tmp_path, deploy={"keep_previous": 0}))) == "fail"


def test_dns_failover(tmp_path):
    assert outcome(avail.dns_failover, facts(config(tmp_path))) == "n/a"
    no_secondary = config(tmp_path, dns={"zone": "example.com.", "record": "api.example.com.", "primary": "a.example.com"})
    assert outcome(avail.dns_failover, facts(no_secondary)) == "fail"


# ---- observability and operations ---------------------------------------------------------------

def prometheus_facts(cfg, **data):
    return facts(cfg, prometheus_url="http://127.0.0.1:9", prometheus=lambda path: data[path],
                 status={"colors": [{"color": "blue", "running": True}]})


def test_prometheus_targets(tmp_path):
    cfg = config(tmp_path)
    up = {"activeTargets": [{"health": "up", "labels": {"color": "blue"}},
                            {"health": "down", "labels": {"color": "green"}}]}   # green is stopped: not counted
    assert outcome(ops.prometheus_targets, prometheus_facts(cfg, targets=up)) == "pass"
    down = {"activeTargets": [{"health": "down", "labels": {"color": "blue"}, "scrapeUrl": "u"}]}
    assert outcome(ops.prometheus_targets, prometheus_facts(cfg, targets=down)) == "fail"
    assert outcome(ops.prometheus_targets, facts(cfg, prometheus_url=None)) == "fail"


def test_alert_rules(tmp_path):
    cfg = config(tmp_path)
    names = ops.shipped_alert_names()
    loaded = {"groups": [{"rules": [{"name": n} for n in names]}]}
    assert outcome(ops.alert_rules, prometheus_facts(cfg, rules=loaded)) == "pass"
    loaded["groups"][0]["rules"].pop()
    result = ops.alert_rules(prometheus_facts(cfg, rules=loaded))
    assert result.status == "fail" and names[-1] in result.observed


def test_alerts_firing(tmp_path):
    cfg = config(tmp_path)
    info = {"alerts": [{"state": "firing", "labels": {"alertname": "RagDeploymentCompleted", "severity": "info"}}]}
    assert outcome(ops.alerts_firing, prometheus_facts(cfg, alerts=info)) == "pass"
    firing = {"alerts": [{"state": "firing", "labels": {"alertname": "RagApiDown", "severity": "critical"}}]}
    assert "RagApiDown" in ops.alerts_firing(prometheus_facts(cfg, alerts=firing)).observed


def test_dashboards_and_tracing(tmp_path):
    assert outcome(ops.dashboards, facts(config(tmp_path))) == "pass"
    assert outcome(ops.tracing, facts(config(tmp_path))) == "n/a"


def drill_report(kind, finished, exit_code=0, rto_met=True):
    return {"drill": f"drill-{kind}", "finished_at": finished, "exit_code": exit_code, "verdict": "passed",
            "rto": {"seconds": 40, "target_seconds": 900, "met": rto_met},
            "rpo": {"seconds": 1, "target_seconds": 300, "met": True}, "_path": f"/r/{kind}/report.json"}


def test_drill_checks_give_partial_credit_to_stale_evidence(tmp_path):
    check = load_checks()["operations.drill-backup-restore"].run
    cfg = config(tmp_path)
    assert check(facts(cfg, drill_reports=[drill_report("backup-restore", ago(days=2))])).status == "pass"
    stale = check(facts(cfg, drill_reports=[drill_report("backup-restore", ago(days=20))]))
    assert stale.status == "partial" and stale.credit == ops.STALE_CREDIT
    assert check(facts(cfg, drill_reports=[drill_report("backup-restore", ago(days=2), exit_code=3)])).status == "fail"
    assert check(facts(cfg, drill_reports=[drill_report("backup-restore", ago(days=2), rto_met=False)])).status == "fail"
    assert check(facts(cfg, drill_reports=[])).status == "fail"
    assert load_checks()["operations.drill-auto-failover"].run(facts(cfg)).status == "n/a"


def test_runbooks_valid(tmp_path):
    cfg = config(tmp_path)
    assert outcome(ops.runbooks_valid, facts(cfg, runbooks=[{"name": "a", "issues": []}])) == "pass"
    assert outcome(ops.runbooks_valid, facts(cfg, runbooks=[{"name": "a", "issues": ["a.yaml:3: bad"]}])) == "fail"


def test_pre_deploy(tmp_path):
    cfg = config(tmp_path)
    ok = [{"runbook": "pre-deploy", "status": "succeeded", "run_id": "r1", "started_at": ago(hours=1)}]
    assert outcome(ops.pre_deploy, facts(cfg, runbook_runs=ok)) == "pass"
    failed = [{"runbook": "pre-deploy", "status": "gate_failed", "failed_step": "load", "run_id": "r2"}, *ok]
    assert outcome(ops.pre_deploy, facts(cfg, runbook_runs=failed)) == "fail"
    assert outcome(ops.pre_deploy, facts(cfg, runbook_runs=[])) == "fail"


# ---- scoring ----------------------------------------------------------------------------------------

def finding(severity, status, credit, area="backups", check_id="backups.x"):
    return Finding(check_id, area, severity, "t", status, "o", "e", "f", credit)


def test_score_weighs_severity_and_ignores_not_applicable_and_waived():
    findings = [finding("critical", "pass", 1.0), finding("low", "fail", 0.0), finding("high", "n/a", 0.0),
                finding("high", "waived", 0.0)]
    overall, areas = score(findings)
    assert overall == round(100 * 10 / 11) and areas == {"backups": overall}
    assert score([finding("high", "partial", 0.5)])[0] == 50


def test_exit_codes():
    assert verdict_of([finding("critical", "fail", 0.0)], 90, 0)[0] == 3
    assert verdict_of([finding("high", "fail", 0.0)], 40, 50)[0] == 4
    assert verdict_of([finding("high", "fail", 0.0)], 40, 0)[0] == 0
    assert verdict_of([finding("critical", "pass", 1.0)], 100, 100) == (0, "every check passed")


def test_every_check_is_covered_here():
    """A new check needs its passing and failing case in this file."""
    source = Path(__file__).read_text()
    for check_id, spec in load_checks().items():
        name = spec.run.__name__
        assert name in source or check_id in source or name == "drill", f"{check_id} has no test here"


def test_unobservable_fact_is_a_miss(tmp_path):
    from ragops.audit.engine import evaluate

    spec = load_checks()["availability.database-nodes"]
    result = evaluate(spec, facts(config(tmp_path)))   # no status given: the source could not be read
    assert result.status == "fail" and result.observed.startswith("could not observe:")


def test_waivers_apply_until_they_expire(tmp_path):
    from ragops.audit.engine import apply_waiver

    cfg = config(tmp_path, audit={"waivers": [{"check": "backups.x", "reason": "accepted for Q4", "by": "cto",
                                               "expires": "2026-12-31"}]})
    live = finding("high", "fail", 0.0)
    assert apply_waiver(live, cfg.env.audit.waivers, NOW.date()) is None and live.status == "waived"
    old = finding("high", "fail", 0.0)
    lapsed = apply_waiver(old, cfg.env.audit.waivers, datetime(2027, 1, 2).date())
    assert lapsed["check"] == "backups.x" and old.status == "fail" and old.waiver["expired"]


@pytest.mark.parametrize("bad, key", [({"check": "nodot", "reason": "r" * 5, "by": "a", "expires": "2027-01-01"},
                                       "check"),
                                      ({"check": "a.b", "reason": "r" * 5, "by": "a", "expires": "soon"}, "expires")])
def test_bad_waivers_name_the_key(tmp_path, bad, key):
    from ragops.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config(tmp_path, audit={"waivers": [bad]})
    assert f"audit.waivers[0].{key}" in err.value.message or f"audit.waivers.0.{key}" in err.value.message
