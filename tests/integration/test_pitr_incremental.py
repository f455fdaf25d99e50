"""Incremental base backups on a real local stack (PostgreSQL primary + replica, WAL archive on):
a chain full -> incremental -> incremental restores every write, drops what was dropped, and a broken
chain is refused before anything is written."""
from __future__ import annotations

import shutil

import psycopg
import pytest

from tests.conftest import server_tmpdir

pytestmark = pytest.mark.integration


def _run(stack, port: int, *statements: str, dbname: str = "rag"):
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres password={password} dbname={dbname} "
                         "connect_timeout=5", autocommit=True) as conn:
        result = None
        for statement in statements:
            cur = conn.execute(statement)
            result = cur.fetchall() if cur.description else None
        return result


def test_incremental_chain_restores_every_write_and_drops_what_was_dropped(local_stack):
    from ragops.backup.catalog import MANIFEST, storages
    from ragops.config import load_config

    stack = local_stack
    config = load_config(stack.config_path)
    port = config.database.primary.port
    _run(stack, port, "CREATE TABLE incr_marks (id serial PRIMARY KEY, label text NOT NULL)",
         "CREATE TABLE incr_doomed AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g",
         "INSERT INTO incr_marks (label) VALUES ('before-full')")
    doomed = _run(stack, port, "SELECT pg_relation_filepath('incr_doomed')")[0][0]
    full = stack.json("backup", "create", "--physical")

    _run(stack, port, "INSERT INTO incr_marks (label) VALUES ('after-full')")
    refused = stack.cli("backup", "create", "--incremental")
    assert refused.returncode == 2 and "--physical" in refused.stderr
    first = stack.json("backup", "create", "--physical", "--incremental")
    incr = first["physical"]["incremental"]
    assert incr["parent"] == full["id"] and incr["chain"] == [full["id"]]
    assert 0 < incr["changed_files"] < len(incr["files"]) / 2, "an incremental copies the changed files only"
    assert first["stored_bytes"] < full["stored_bytes"] / 2

    _run(stack, port, "DROP TABLE incr_doomed", "INSERT INTO incr_marks (label) VALUES ('after-first')")
    second = stack.json("backup", "physical", "create", "--incremental")
    assert second["physical"]["incremental"]["chain"] == [full["id"], first["id"]]
    _run(stack, port, "INSERT INTO incr_marks (label) VALUES ('after-second')")
    _run(stack, port, "SELECT pg_switch_wal()", dbname="postgres")
    assert stack.cli("backup", "wal", "ship").returncode == 0
    kinds = {b["id"]: b["kind"] for b in stack.json("backup", "list")["backups"]}
    assert kinds[full["id"]] == "physical" and kinds[second["id"]] == "incremental"

    root = server_tmpdir("incr")
    try:
        target = root / "restored"
        restored = stack.json("backup", "physical", "restore", second["id"], "--to-latest",
                              "--target-dir", str(target), "--keep-running", timeout=300)
        try:
            labels = [r[0] for r in _run(stack, restored["port"], "SELECT label FROM incr_marks ORDER BY id")]
            assert labels == ["before-full", "after-full", "after-first", "after-second"]
            assert _run(stack, restored["port"], "SELECT to_regclass('incr_doomed')")[0][0] is None
            assert not (target / doomed).exists(), "a file the newest backup no longer lists is removed"
        finally:
            from ragops.db import pgctl

            home = root if pgctl._account() is not None else None
            pgctl.Node("pitr-restore", target, restored["port"], root / "x.log", home=home).stop(mode="immediate")

        # a broken chain is refused naming the missing link, before a byte is written
        storage, _copy = storages(config)
        storage.delete(f"{first['id']}/{MANIFEST}")
        broken = stack.cli("backup", "physical", "restore", second["id"], "--to-latest",
                           "--target-dir", str(root / "broken"))
        assert broken.returncode != 0 and first["id"] in broken.stderr and "chain is broken" in broken.stderr
        assert not (root / "broken").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
