"""The guide's alerting strategy is in the Prometheus rule files, each alert with its threshold."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ragops.durations import parse_duration
from tests.conftest import require_module

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def rules() -> dict[str, dict]:
    found = {}
    files = sorted((TEMPLATES / "alerts").glob("*.y*ml"))
    assert files, "no alert rule files under templates/alerts"
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert set(data) == {"groups"}
        for group in data["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
                assert rule["alert"] not in found, f"{rule['alert']} defined twice"
                found[rule["alert"]] = rule
    return found


def _compact(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# alert name -> (severity, pieces the expression must contain, threshold check on the expression, min `for`)
GUIDE = {
    "RagApiDown": ("critical", ['up{job="rag-service"}'], r"== 0$", 120),
    "RagDatabaseConnectionFailure": ("critical", ["pg_up == 0", 'probe_success{job="rag-readyz"} == 0'], None, 0),
    "RagHighErrorRate": ("critical", ['rag_http_requests_total{status=~"5.."}', "rag_http_requests_total[5m]"],
                         r"> 0\.10$", 0),
    "RagDiskSpaceHigh": ("critical", ["node_filesystem_avail_bytes", "node_filesystem_size_bytes"], r"> 0\.90$", 0),
    "RagSlowResponses": ("warning", ["histogram_quantile(0.95", "rag_http_request_duration_seconds_bucket"],
                         r"> 2$", 0),
    "RagMemoryHigh": ("warning", ["node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"], r"> 0\.80$", 0),
    "RagBackupFailed": ("warning", ["ragops_backup_check_ok == 0", "ragops_backup_last_success_timestamp_seconds"],
                        r"> 26 \* 3600$", 0),
    "RagTlsCertificateExpiring": ("warning", ["probe_ssl_earliest_cert_expiry"], r"< 7 \* 86400$", 0),
    "RagWalArchiveLagging": ("warning", ["ragops_wal_archive_lag_seconds", "ragops_wal_gaps > 0"], None, 600),
    "RagPitrBeyondRpo": ("critical", ["ragops_wal_last_archived_timestamp_seconds"], r"> 300$", 300),
}


@pytest.mark.parametrize("name", sorted(GUIDE))
def test_each_guide_alert_is_present_with_its_threshold(name):
    severity, pieces, threshold, min_for = GUIDE[name]
    rule = rules()[name]
    expr = _compact(rule["expr"])
    for piece in pieces:
        assert piece in expr, (name, piece, expr)
    if threshold:
        assert re.search(threshold, expr), (name, threshold, expr)
    assert rule["labels"]["severity"] == severity
    assert rule["annotations"]["summary"]
    assert parse_duration(rule.get("for", 0)) >= min_for


def test_api_down_waits_two_minutes_exactly():
    assert rules()["RagApiDown"]["for"] == "2m"


def test_critical_alerts_page_and_warnings_do_not():
    for name, (severity, *_rest) in GUIDE.items():
        labels = rules()[name]["labels"]
        assert (labels.get("page") == "true") == (severity == "critical"), name


def test_backup_alert_metric_names_match_what_backup_check_writes():
    """The backup engine writes these textfile metrics (ragops.backup.metrics.write_metrics)."""
    source = (Path(__file__).resolve().parents[2] / "ragops" / "backup" / "metrics.py").read_text()
    for metric in ("ragops_backup_last_success_timestamp_seconds", "ragops_backup_check_ok"):
        assert metric in source


def test_monitoring_render_action_accepts_the_shipped_templates(tmp_path):
    from ragops.runbook.operations.monitoring import GUIDE_ALERTS

    assert set(GUIDE_ALERTS) == set(GUIDE)


def test_grafana_dashboard_is_valid_json_with_the_service_metrics():
    dashboards = sorted((TEMPLATES / "grafana").glob("*.json"))
    assert dashboards
    data = json.loads(dashboards[0].read_text())
    exprs = " ".join(t["expr"] for p in data["panels"] for t in p["targets"])
    for metric in ("rag_http_requests_total", "rag_http_request_duration_seconds_bucket",
                   "rag_http_requests_in_flight", "rag_build_info", "ragops_backup_last_success_timestamp_seconds"):
        assert metric in exprs
    assert len({p["id"] for p in data["panels"]}) == len(data["panels"])


def test_drill_schedules_are_shipped():
    cron = (TEMPLATES / "cron" / "ragops-drills.cron").read_text()
    lines = [ln for ln in cron.splitlines() if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert any("drill run backup-restore" in ln for ln in lines)
    for line in lines:
        assert len(line.split()) >= 7 and "%" not in line.replace("\\%", "")
    job = yaml.safe_load((TEMPLATES / "kubernetes" / "drill-cronjob.yaml").read_text())
    assert job["kind"] == "CronJob" and job["apiVersion"] == "batch/v1"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-5:-2] == ["drill", "run", "backup-restore"]


def test_cronjob_manifest_passes_kubernetes_validate():
    kv = require_module("kubernetes_validate")
    job = yaml.safe_load((TEMPLATES / "kubernetes" / "drill-cronjob.yaml").read_text())
    kv.validate(job, "1.29", strict=True)


def test_promtool_unit_tests_pass():
    """Each alert fires on the series that should fire it, after its `for`, and stays quiet before
    (tests/alerts/ragops-alerts.test.yml, run by Prometheus's own promtool)."""
    import shutil
    import subprocess

    from tests.conftest import need

    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool (apt-get install prometheus)")
    tests = Path(__file__).resolve().parents[1] / "alerts" / "ragops-alerts.test.yml"
    proc = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_checks_the_rules():
    import shutil
    import subprocess

    from tests.conftest import need

    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool (apt-get install prometheus)")
    proc = subprocess.run([promtool, "check", "rules", str(TEMPLATES / "alerts" / "ragops-alerts.yml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "SUCCESS: 11 rules found" in proc.stdout, proc.stdout + proc.stderr
