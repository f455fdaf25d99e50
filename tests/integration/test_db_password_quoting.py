"""A database password with a space, a quote and a backslash, against a real PostgreSQL: every conninfo
ragops builds (the nodes', the service's) quotes it, and it never shows in the output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from ragops.config import load_config
from ragops.netutil import free_port

pytestmark = pytest.mark.integration
PASSWORD = "pa ss'w\\rd x=y"


@pytest.fixture(scope="module")
def primary():
    from ragops.pg import pgctl
    from tests.conftest import need

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001 - reported as a missing component
        need(False, f"PostgreSQL binaries ({exc})")
    base = Path(tempfile.mkdtemp(prefix="ragops-pwquote-"))
    base.chmod(0o755)   # as root, the server account reaches its data directory in here
    port = free_port()
    doc = {"project": "pwquote", "default_env": "local",
           "environments": {"local": {"platform": "local", "state_dir": str(base / "state"),
                                      "database": {"name": "appdb", "user": "app", "replicas": [],
                                                   "primary": {"name": "primary", "host": "127.0.0.1", "port": port}}}}}
    path = base / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc))
    config = load_config(path)
    secret = config.state_dir / "secrets" / "db-password"   # where the local platform keeps a generated password
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    node = pgctl.managed_node(config, "primary")
    node.init_primary("postgres", PASSWORD)
    node.start()
    try:
        yield config, path
    finally:
        try:
            node.stop(mode="immediate")
        except Exception:  # noqa: BLE001 - the server may be gone already
            node.kill9()
        pgctl.remove_server_home(config)
        shutil.rmtree(base, ignore_errors=True)


def test_the_node_and_service_conninfo_carry_the_password_quoted(primary):
    from ragops.db.bringup import role_and_database
    from ragops.db.connect import app_dsn, node_dsn

    config, _path = primary
    with psycopg.connect(node_dsn(config, dbname="postgres"), autocommit=True) as conn:   # was: missing "=" after "ss'w\rd"
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    role_and_database(config, "primary", PASSWORD)
    with psycopg.connect(app_dsn(config), autocommit=True) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("app", "appdb")


def test_db_status_connects_and_never_shows_the_password(primary):
    _config, path = primary
    proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(path), "-o", "json", "db", "status"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "RAGOPS_NO_CONFIG_CACHE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pa ss" not in proc.stdout + proc.stderr and "w\\rd" not in proc.stdout + proc.stderr
    [node] = json.loads(proc.stdout)["nodes"]
    assert (node["name"], node["role"], node["reachable"], node["error"]) == ("primary", "primary", True, None)
