"""Migrations and the deploy gate: a build serves on newer non-breaking schemas (so the previous
color stays warm and rollback is a flip), a breaking migration is refused cleanly, and the gate
reads the migrations of service.path, not the bundled ones (issue 13 items 26 and 27)."""
from __future__ import annotations

import json
import shutil
import sys

import httpx
import pytest

from ragops.pg import migrate
from tests.integration.conftest import _start_stack
from tests.integration.test_service import SERVICE_DIR, make_database

pytestmark = pytest.mark.integration

EXPAND = "CREATE TABLE IF NOT EXISTS gate_notes (id int PRIMARY KEY, note text);\n"
BREAKING = "-- Drops what older builds read.\n-- ragops: breaking\nALTER TABLE gate_notes DROP COLUMN note;\n"


def test_a_build_accepts_newer_schemas_up_to_the_first_breaking_migration(pg_cluster, tmp_path):
    sys.path.insert(0, str(SERVICE_DIR))
    import psycopg

    from ragservice import db

    database = make_database(pg_cluster["dsn"], "range")
    (tmp_path / "0001_base.sql").write_text("CREATE TABLE base (id int);\n")
    migrate.apply_migrations(database["admin"], tmp_path, app_user=database["name"])
    pool = db.Pool(database["app"], size=1)
    try:
        assert db.readiness(pool, 1) == (True, "ok", 1, 1)
        (tmp_path / "0002_notes.sql").write_text(EXPAND)
        migrate.apply_migrations(database["admin"], tmp_path, app_user=database["name"])
        assert db.readiness(pool, 1) == (True, "ok", 2, 2)   # the previous build stays ready
        assert db.readiness(pool, 2) == (True, "ok", 2, 2)
        (tmp_path / "0003_drop_note.sql").write_text(BREAKING)
        migrate.apply_migrations(database["admin"], tmp_path, app_user=database["name"])
        assert db.readiness(pool, 1) == (False, "schema version 3, this build accepts 1 to 2", 3, 2)
        assert db.readiness(pool, 3) == (True, "ok", 3, 3)
        assert db.readiness(pool, 4)[:2] == (False, "schema version 3, this build accepts 4 to 4")
    finally:
        pool.close()
    with psycopg.connect(database["admin"]) as conn:
        rows = conn.execute("SELECT version, breaking FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(1, False), (2, False), (3, True)]


@pytest.fixture(scope="module")
def moved_stack():
    """A local stack whose service.path is a copy of the service outside the checkout."""
    from tests.conftest import server_tmpdir

    directory = server_tmpdir("migrations")
    service = directory / "service"
    shutil.copytree(SERVICE_DIR, service, ignore=shutil.ignore_patterns("__pycache__"))
    stack = _start_stack(directory, service_path=service)
    stack.service_dir = service
    yield stack
    stack.cli("down", "--purge", "--yes", timeout=120)
    shutil.rmtree(directory, ignore_errors=True)


def _colors(stack) -> dict:
    return {c["color"]: c for c in stack.json("status")["colors"]}


def test_non_breaking_migration_keeps_the_warm_color_ready_and_rollback_flips(moved_stack):
    stack = moved_stack
    before = _colors(stack)
    live = max(before.values(), key=lambda c: c["weight"])
    assert live["version"] == "v1"
    latest = migrate.latest_version(stack.service_dir / "migrations")
    (stack.service_dir / "migrations" / f"{latest + 1:04d}_gate_notes.sql").write_text(EXPAND)

    out = stack.json("deploy", "--version", "v2", "--yes")
    assert out["result"] == "succeeded", out
    steps = {s["name"]: s for s in out["steps"]}
    assert f"{latest + 1:04d}_gate_notes.sql" in steps["migrations"]["detail"]
    assert steps["warm color after migration"]["ok"] is True
    # the warm color (v1, built for the older schema) still answers ready, and says what it accepts
    ready = httpx.get(live["url"] + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["schema_version"] == latest + 1
    assert body["accepted_schema_versions"] == {"from": latest, "to": latest + 1}

    proc = stack.cli("--output", "json", "rollback", "--yes")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["result"] == "succeeded" and result["version"] == "v1"
    assert "flip router to warm" in proc.stderr, proc.stderr
    warm = [s for s in result["steps"] if s["name"] == "warm color"]
    assert warm and warm[0]["ok"] is True and "is ready" in warm[0]["detail"], warm   # flipped, not restarted
    assert not [s for s in result["steps"] if "starting it" in s.get("detail", "")], "the warm color was restarted"


def test_breaking_migration_is_refused_cleanly_with_the_gate_message_recorded(moved_stack):
    stack = moved_stack
    latest = migrate.latest_version(stack.service_dir / "migrations")
    name = f"{latest + 1:04d}_drop_note.sql"
    (stack.service_dir / "migrations" / name).write_text(BREAKING)
    try:
        proc = stack.cli("deploy", "--version", "v3", "--yes")
    finally:
        (stack.service_dir / "migrations" / name).unlink()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"migration {name} is marked breaking" in proc.stderr
    assert "cannot read migration" not in proc.stderr
    # a refusal, not an interrupted deploy: nothing to resume or abort, and history says why
    assert not (stack.state_dir / "deploy" / "current.json").exists()
    last = stack.json("history", "-n", "1")[-1]
    assert last["version"] == "v3" and last["result"] == "failed"
    assert f"migration {name} is marked breaking" in last["reason"]
    assert stack.cli("deploy", "--version", "v3b", "--yes").returncode == 0   # no lock or journal left
