"""The shipped runbooks on a real local stack (PostgreSQL primary + replica, Traefik, the service):
pre-deploy passes on a healthy stack and fails with exit 3 when the backup is stale; db-corruption
restores deleted rows; a drill writes its three report files.

Every operation a runbook needs must exist: with RAGOPS_REQUIRE_INTEGRATION=1 a missing one FAILS
the test (tests.conftest.need), it never skips in CI.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import psycopg
import pytest
import yaml

pytestmark = pytest.mark.integration

class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def webhook():
    Hook.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def stack():
    from tests.conftest import server_tmpdir
    from tests.integration.conftest import _start_stack

    directory = server_tmpdir("runbooks")
    # a configured security scan that passes: this stack has no image to scan (the command is the
    # contract: its exit status is the verdict); notify goes to the test's own webhook server
    stack = _start_stack(directory, extra={"runbooks": {"strict": True, "security_scan": "python -c pass",
                                                        "notify_webhook": "${env:RAGOPS_IT_WEBHOOK}"}})
    yield stack
    stack.cli("down", "--purge", "--yes", timeout=120)
    shutil.rmtree(directory, ignore_errors=True)


def _dsn(stack, dbname: str = "rag") -> str:
    env = yaml.safe_load(stack.config_path.read_text())["environments"]["test"]["database"]
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    return f"host=127.0.0.1 port={env['primary']['port']} user=postgres password={password} dbname={dbname}"


def _run(stack, webhook, *args, timeout=600):
    proc = stack.cli("-o", "json", *args, timeout=timeout, env={"RAGOPS_IT_WEBHOOK": webhook})
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc, data


def _statuses(data) -> dict:
    return {s["id"]: s["status"] for s in data["steps"]}


PRE_DEPLOY = ("runbook", "run", "pre-deploy", "--input", "expected_rps=5", "--input", "load_duration=4s",
              "--ack", "on-call", "--ack", "runbooks-accessible", "--approve", "cost-estimate")


def test_pre_deploy_passes_on_a_healthy_stack(stack, webhook):
    stack.cli("backup", "create", "--label", "it-fresh", check=True, timeout=300)
    proc, data = _run(stack, webhook, *PRE_DEPLOY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(_statuses(data).values()) == {"ok"}, _statuses(data)
    load = next(s for s in data["steps"] if s["id"] == "load-test")["outputs"]
    assert load["requests"] > 0 and load["error_rate"] <= 0.01 and load["target_rps"] == 10
    assert next(s for s in data["steps"] if s["id"] == "scratch-migrate")["status"] == "ok"
    audit = next(s for s in data["steps"] if s["id"] == "audit")["outputs"]
    assert 0 < audit["score"] <= 100 and "backups.full-age (critical)" not in audit["missed"]
    with psycopg.connect(_dsn(stack, "postgres"), autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'ragops_predeploy_scratch'").fetchone()[0]
    assert left == 0, "the scratch database was not dropped"
    assert (stack.state_dir / "monitoring" / "alerts" / "ragops-alerts.yml").exists()


def test_pre_deploy_fails_with_exit_3_when_the_backup_is_stale(stack, webhook):
    stack.cli("backup", "create", "--label", "it-stale", check=True, timeout=300)
    time.sleep(2.5)
    proc, data = _run(stack, webhook, *PRE_DEPLOY, "--input", "backup_max_age=2s")
    assert proc.returncode == 3, proc.stderr[-3000:]
    statuses = _statuses(data)
    assert statuses["fresh-backup"] == "failed" and data["failed_step"] == "fresh-backup"
    assert "old" in data["error"]
    # a failed gate does not hide the other checks: they all ran
    assert statuses["load-test"] == "ok" and statuses["cost-estimate"] == "ok"


def test_pre_deploy_without_acks_in_ci_is_exit_5(stack, webhook):
    proc, data = _run(stack, webhook, "runbook", "run", "pre-deploy", "--from", "on-call")
    # refused before the first step: all three grants named at once, no run started
    assert proc.returncode == 5 and data is None, proc.stderr
    assert "--ack on-call --ack runbooks-accessible --approve cost-estimate" in proc.stderr
    assert "nothing was run" in proc.stderr


def test_db_corruption_restores_deleted_rows(stack, webhook):
    headers = {"X-API-Key": stack.api_key}
    ids = []
    with httpx.Client(base_url=stack.router_url, timeout=15) as client:
        for index in range(3):
            response = client.post("/api/v1/documents", headers=headers,
                                   json={"title": f"runbook doc {index}", "content": f"restore drill content {index}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    stack.cli("backup", "create", "--label", "before-corruption", check=True, timeout=300)
    with psycopg.connect(_dsn(stack), autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        conn.execute("DELETE FROM documents WHERE id = ANY(%s::uuid[])", (ids,))
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == before - 3
    Hook.received.clear()
    proc, data = _run(stack, webhook, "runbook", "run", "db-corruption", "--approve", "confirm-restore")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(_statuses(data).values()) == {"ok"}, _statuses(data)
    with psycopg.connect(_dsn(stack), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == before
        back = conn.execute("SELECT count(*) FROM documents WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()[0]
    assert back == 3
    with httpx.Client(base_url=stack.router_url, timeout=15) as client:
        assert client.get(f"/api/v1/documents/{ids[0]}", headers=headers).status_code == 200
    assert any("restored" in m["text"] for m in Hook.received)
    audit = Path(data["run_dir"]) / "audit.jsonl"
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    approval = next(e for e in events if e["event"] == "approval")
    assert approval["via"] == "--approve confirm-restore" and approval["result"] == "approved"
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    assert password not in audit.read_text()


def test_backup_restore_drill_writes_three_reports(stack, webhook, tmp_path):
    stack.cli("backup", "create", "--label", "drill", check=True, timeout=300)
    report_dir = tmp_path / "report"
    proc, data = _run(stack, webhook, "drill", "run", "backup-restore", "--report", str(report_dir))
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    assert {p.name for p in report_dir.iterdir()} == {"report.json", "report.md", "report.html"}
    report = json.loads((report_dir / "report.json").read_text())
    assert report["status"] == "succeeded", report
    assert report["rto"]["seconds"] is not None and report["rto"]["seconds"] > 0
    assert report["rpo"]["seconds"] is not None and report["rpo"]["seconds"] < 600
    assert proc.returncode == (0 if report["rto"]["met"] and report["rpo"]["met"] else 3)
    assert "<svg" in (report_dir / "report.html").read_text()


def test_deploy_rollback_drill_measures_the_rollback(stack, webhook, tmp_path):
    report_dir = tmp_path / "rollback-report"
    proc, data = _run(stack, webhook, "drill", "run", "deploy-rollback", "--report", str(report_dir),
                      "--input", "version=v-drill")
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["status"] == "succeeded", report["steps"]
    assert report["rto"]["seconds"] > 0 and report["rpo"]["met"] is None
    with httpx.Client(base_url=stack.router_url, timeout=10) as client:
        assert client.get("/version").json()["version"] == "v1"     # rolled back


def test_deploy_day_then_post_deploy(stack, webhook):
    Hook.received.clear()
    proc, data = _run(stack, webhook, "runbook", "run", "deploy-day", "--input", "version=v3",
                      "--input", "watch_window=4s", "--ack", "channel-open", "--approve", "go")
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = _statuses(data)
    assert statuses["deploy"] == "ok" and statuses["watch"] == "ok" and statuses["backup-verify"] == "ok"
    assert statuses["rollback"] == "skipped" and statuses["notify-failed"] == "skipped"
    assert [m["attachments"][0]["title"] for m in Hook.received] == ["Deploy starting", "Deploy finished"]
    proc, data = _run(stack, webhook, "runbook", "run", "post-deploy", "--input", "expected_version=v3",
                      "--input", "load_duration=4s", "--input", "watch_window=4s",
                      "--ack", "user-feedback", "--ack", "post-mortem")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(_statuses(data).values()) == {"ok"}, _statuses(data)
    assert list((stack.state_dir / "schedules").glob("post-deploy-watch-*.json"))
