"""The foundation on real processes: PostgreSQL primary + replica, Traefik, the service."""
from __future__ import annotations

import os
import time

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.integration


def _db(stack, node: str) -> str:
    import yaml

    env = yaml.safe_load(stack.config_path.read_text())["environments"]["test"]["database"]
    port = env["primary"]["port"] if node == "primary" else env["replicas"][0]["port"]
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    return f"host=127.0.0.1 port={port} user=postgres password={password} dbname=rag"


def test_status_json_describes_the_stack(local_stack):
    data = local_stack.json("status")
    assert data["router"]["running"] is True
    assert data["router"]["weights"] == {"blue": 100}
    blue = next(c for c in data["colors"] if c["color"] == "blue")
    assert blue["running"] and blue["healthy"] and blue["ready"] and blue["version"] == "v1"
    assert isinstance(blue["pid"], int) and blue["port"]
    roles = {n["name"]: n["role"] for n in data["database"]}
    assert roles == {"primary": "primary", "replica1": "replica"}
    assert data["lock"] is None


def test_up_is_idempotent(local_stack):
    before = local_stack.json("status")
    out = local_stack.json("up")
    assert out["steps"] == []
    after = local_stack.json("status")
    assert [c["pid"] for c in before["colors"]] == [c["pid"] for c in after["colors"]]


def test_row_written_on_primary_appears_on_replica(local_stack):
    marker = f"m{time.time_ns()}"
    with psycopg.connect(_db(local_stack, "primary"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS replication_probe (v text)")
        conn.execute("INSERT INTO replication_probe VALUES (%s)", (marker,))
    deadline = time.monotonic() + 10
    with psycopg.connect(_db(local_stack, "replica"), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM replication_probe WHERE v = %s", (marker,)).fetchone():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the row never reached the replica")
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True


def test_document_round_trip_through_the_router(local_stack):
    headers = {"X-API-Key": local_stack.api_key}
    with httpx.Client(base_url=local_stack.router_url, timeout=10) as client:
        version = client.get("/version")
        assert version.status_code == 200 and version.json()["version"] == "v1"
        doc = client.post("/api/v1/documents", headers=headers,
                          json={"title": "runbooks", "content": "The on-call engineer runs the region failover runbook at 3am."})
        assert doc.status_code == 201
        found = client.post("/api/v1/query", headers=headers, json={"query": "who runs the region failover runbook?"})
        assert found.status_code == 200
        assert found.json()["results"][0]["document_id"] == doc.json()["id"]
        assert "failover runbook" in found.json()["answer"]
        refused = client.post("/api/v1/query", json={"query": "x"})
        assert refused.status_code == 401
        for header in ("strict-transport-security", "content-security-policy", "x-frame-options",
                       "x-content-type-options"):
            assert header in refused.headers


def test_smoke_command_passes_and_reports_json(local_stack):
    report = local_stack.json("smoke")
    assert report["passed"] is True
    assert {c["name"] for c in report["checks"]} >= {"health", "readiness", "auth required", "security headers",
                                                     "upload", "query finds it", "delete"}


def test_logs_lists_components(local_stack):
    out = local_stack.json("logs")
    assert "router" in out and "blue" in out and "db-primary" in out
    text = local_stack.cli("logs", "db-primary", "-n", "5", check=True).stdout
    assert text.strip()


def test_down_leaves_no_process_and_up_restores():
    from tests.conftest import server_tmpdir
    from tests.integration.conftest import _start_stack

    stack = _start_stack(server_tmpdir("stack"))
    stack.cli("deploy", "--version", "v2", "--yes", check=True, timeout=240)   # green v2 is live now
    status = stack.json("status")
    pids = [c["pid"] for c in status["colors"] if c["pid"]]
    run_dir = stack.state_dir / "run"
    pid_files = list(run_dir.glob("*.pid"))
    assert pids and pid_files
    from ragops.config import load_config
    from ragops.pg.pgctl import managed_node

    data = {n: managed_node(load_config(stack.config_path), n).data_dir for n in ("primary", "replica1")}
    postmasters = [int((data[n] / "postmaster.pid").read_text().split()[0]) for n in data]
    stack.cli("down", check=True)
    for pid in pids + postmasters:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"process {pid} survived `ragops down`"
    assert not any(run_dir.glob("*.pid"))
    assert (data["primary"] / "PG_VERSION").exists(), "data must be kept"
    # a second up brings back what was live (green v2, not service.version v1), with the data, and says so
    up = stack.cli("up", check=True, timeout=120)
    assert "restoring green (v2): it was live before" in up.stderr, up.stderr
    status = stack.json("status")
    assert status["router"]["weights"] == {"green": 100}
    assert {c["color"]: c["version"] for c in status["colors"] if c["running"]}.get("green") == "v2"
    # the WAL archive made backups with the generated key: a plain purge keeps that key (and says so)
    purge = stack.cli("down", "--purge", "--yes", check=True)
    key = stack.state_dir / "secrets" / "backup-age-key"
    assert f"kept: {key}" in purge.stdout + purge.stderr and key.exists()
    assert [p for p in stack.state_dir.rglob("*") if p.is_file()] == [key] and not data["primary"].exists()
    stack.cli("down", "--purge", "--purge-backups", "--yes", check=True)
    assert not stack.state_dir.exists()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_purge_without_yes_is_refused_in_ci(local_stack):
    proc = local_stack.cli("down", "--purge")
    assert proc.returncode == 5
    assert "--yes" in proc.stderr
    assert local_stack.json("status")["router"]["running"] is True
