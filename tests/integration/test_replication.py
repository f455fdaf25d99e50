"""Replication against real PostgreSQL: our own primary + replica (never the shared pg_cluster)."""
from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from ragops.config import load_config
from ragops.netutil import free_port

pytestmark = pytest.mark.integration


def write_config(base: Path, primary_port: int, replica_port: int, **database) -> Path:
    import yaml

    state = base / "state"
    db = {"name": "postgres", "primary": {"name": "primary", "host": "127.0.0.1", "port": primary_port},
          "replicas": [{"name": "replica1", "host": "127.0.0.1", "port": replica_port}], **database}
    doc = {"project": "repltest", "default_env": "local",
           "environments": {"local": {"platform": "local", "state_dir": str(state), "database": db,
                                      "regions": {"primary": {"database_node": "primary"},
                                                  "secondary": {"database_node": "replica1"}}}}}
    path = base / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def make_cluster(base: Path, **database):
    """A managed primary + streaming replica laid out where pgctl.managed_node finds them."""
    from ragops.pg import pgctl

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001
        from tests.conftest import need
        need(False, f"PostgreSQL binaries ({exc})")
    ports = free_port(), free_port()
    path = write_config(base, *ports, **database)
    config = load_config(path)
    password = "pw-" + secrets.token_hex(8)
    secret = config.state_dir / "secrets" / "db-password"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    primary, replica = pgctl.managed_node(config, "primary"), pgctl.managed_node(config, "replica1")
    primary.init_primary("postgres", password)
    primary.start()
    replica.clone_from(primary, "postgres", password, "replica1")
    replica.start()
    return {"config": config, "path": path, "primary": primary, "replica": replica, "password": password}


@pytest.fixture
def pg_dir():
    """Not pytest's tmp_path: a concurrent pytest session resets /tmp/pytest-of-root to 0700, and
    the server account then cannot reach its own data directory any more."""
    path = Path(tempfile.mkdtemp(prefix="ragops-repltest-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(pg_dir):
    from ragops.pg import pgctl

    c = make_cluster(pg_dir)
    yield c
    for node in (c["replica"], c["primary"]):
        try:
            node.stop(mode="immediate")
        except Exception:  # noqa: BLE001
            node.kill9()
            pgctl.wait_until(lambda node=node: not node.running(), 10)
    pgctl.remove_server_home(c["config"])   # as root: the data and binaries under /var/lib/ragops


def dsn(c, node) -> str:
    return f"host=127.0.0.1 port={node.port} user=postgres password={c['password']} dbname=postgres"


def wait_streaming(c, node, timeout=30):
    from ragops.pg import pgctl

    def ok():
        try:
            with psycopg.connect(dsn(c, node), autocommit=True) as conn:
                row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
                return bool(row and row[0] == "streaming")
        except psycopg.Error:
            return False
    assert pgctl.wait_until(ok, timeout), f"{node.name} is not streaming"


def test_topology_reports_roles_lag_and_slots(cluster):
    from ragops.db.replication import topology

    wait_streaming(cluster, cluster["replica"])
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    time.sleep(1)
    statuses = {s.name: s for s in topology(cluster["config"])}
    assert statuses["primary"].role == "primary" and statuses["primary"].timeline == 1
    assert statuses["replica1"].role == "replica" and statuses["replica1"].streaming
    assert statuses["replica1"].lag_bytes is not None and statuses["replica1"].lag_bytes < 1_000_000
    assert statuses["replica1"].sync_state == "async"
    assert [s["name"] for s in statuses["primary"].slots] == ["replica1"]


def test_db_status_cli_json(cluster):
    from ragops.cli.main import main

    wait_streaming(cluster, cluster["replica"])
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["--config", str(cluster["path"]), "db", "status", "--output", "json"])
    assert code == 0
    data = json.loads(buf.getvalue())
    roles = {n["name"]: n["role"] for n in data["nodes"]}
    assert roles == {"primary": "primary", "replica1": "replica"}
    assert data["primary"] == "primary"
    assert cluster["password"] not in buf.getvalue()


def test_promote_refused_while_old_primary_alive_and_unfenced(cluster):
    from ragops.db.replication import promote
    from ragops.errors import OperationFailed, UsageError

    wait_streaming(cluster, cluster["replica"])
    with pytest.raises(OperationFailed, match="old primary primary is alive"):
        promote(cluster["config"], "replica1", fence_old=False)
    with pytest.raises(UsageError, match="not a replica"):
        promote(cluster["config"], "primary")
    # still a replica, primary still writable
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE still_writable (id int)")


def test_promote_refused_above_lag_limit(cluster):
    from ragops.db.replication import promote
    from ragops.errors import GateFailed

    wait_streaming(cluster, cluster["replica"])
    # pause replay so the lag grows
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE big AS SELECT generate_series(1, 20000) AS id")
    time.sleep(0.5)
    with pytest.raises(GateFailed, match="above the limit"):
        promote(cluster["config"], "replica1", max_lag=1000)


def test_promote_unreachable_primary_needs_confirmation_on_sql_only_platform(cluster, monkeypatch):
    """With no local data directory (a non-local platform), a dead primary must be confirmed down."""
    from ragops.db.replication import promote
    from ragops.errors import OperationFailed

    wait_streaming(cluster, cluster["replica"])
    cluster["primary"].stop(mode="immediate")
    config = cluster["config"]
    monkeypatch.setattr("ragops.db.replication.managed_node", lambda config, name: None)  # no data dirs here
    with pytest.raises(OperationFailed, match="unreachable"):
        promote(config, "replica1")
    result = promote(config, "replica1", confirm_down=True)
    assert result.fenced[0].method == "down-confirmed"


def test_fence_then_promote_then_write(cluster):
    from ragops.db.replication import fence, promote, read_topology, topology

    config = cluster["config"]
    wait_streaming(cluster, cluster["replica"])
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE acked (id int)")
        conn.execute("INSERT INTO acked SELECT generate_series(1, 100)")
    fenced = fence(config, "primary")
    assert fenced.method == "stopped" and not cluster["primary"].running()
    result = promote(config, "replica1", fence_old=False)
    assert result.fenced[0].method == "down-verified"
    assert result.timeline == 2 and result.test_write["node"] == "replica1"
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        conn.execute("INSERT INTO acked VALUES (101)")
        assert conn.execute("SELECT count(*) FROM acked").fetchone()[0] == 101
    journal = read_topology(config)
    assert journal["primary"] == "replica1" and journal["timeline"] == 2
    statuses = {s.name: s for s in topology(config)}
    assert statuses["replica1"].role == "primary" and statuses["primary"].role == "unreachable"


def test_promote_fences_a_live_primary_by_sql_when_not_managed(cluster, monkeypatch):
    """SQL-only fencing: the old primary stays up but refuses writes and its sessions end."""
    from ragops.db.replication import promote

    config = cluster["config"]
    wait_streaming(cluster, cluster["replica"])
    victim = psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True)
    monkeypatch.setattr("ragops.db.replication.managed_node", lambda config, name: None)
    result = promote(config, "replica1")
    assert result.fenced[0].method == "read-only"
    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT 1")
    with (psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn,
          pytest.raises(psycopg.errors.ReadOnlySqlTransaction)):
        conn.execute("CREATE TABLE nope (id int)")


def test_switchover_loses_no_acknowledged_write(cluster):
    from ragops.db.standby import switchover

    config = cluster["config"]
    wait_streaming(cluster, cluster["replica"])
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE acked (id int PRIMARY KEY)")
    acked: list[int] = []
    stop = threading.Event()

    def writer():
        conn = psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                conn.execute("INSERT INTO acked VALUES (%s)", (i,))
                acked.append(i)
            except psycopg.Error:
                return

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.5)
    result = switchover(config, "replica1")
    stop.set()
    thread.join(10)
    assert len(acked) > 100
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM acked")}
    missing = set(acked) - present
    assert missing == set(), f"{len(missing)} acknowledged rows lost"
    assert result.previous_primary == "primary" and result.promote.timeline == 2


def test_rejoin_after_crash_with_pg_rewind_and_streaming_resumes(cluster):
    from ragops.db.replication import promote, topology
    from ragops.db.standby import rejoin

    config = cluster["config"]
    wait_streaming(cluster, cluster["replica"])
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, note text)")
        conn.execute("INSERT INTO t VALUES (1, 'before')")
        conn.execute("CHECKPOINT")
    time.sleep(0.5)
    # the replica stops hearing from the primary, which keeps writing: the histories diverge
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(1)
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        conn.execute("INSERT INTO t SELECT g, 'diverged' FROM generate_series(2, 5000) g")
    cluster["primary"].kill9()   # crash: not shut down cleanly
    from ragops.pg import pgctl
    assert pgctl.wait_until(lambda: not cluster["primary"].running(), 10)
    promote(config, "replica1")
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (7, 'after promotion')")
    result = rejoin(config, "primary")
    assert result.method == "pg_rewind" and result.recovered_crash and result.streaming
    with psycopg.connect(dsn(cluster, cluster["replica"]), autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (8, 'streams to the rejoined node')")

    def seen():
        with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM t WHERE id = 8").fetchone()[0] == 1
    assert pgctl.wait_until(seen, 15)
    with psycopg.connect(dsn(cluster, cluster["primary"]), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        assert conn.execute("SELECT count(*) FROM t WHERE note = 'diverged'").fetchone()[0] == 0
    statuses = {s.name: s for s in topology(config)}
    assert statuses["primary"].role == "replica" and statuses["primary"].streaming
    assert statuses["primary"].upstream == "replica1"


def test_switchover_then_rejoin_and_switch_back(cluster):
    """Round trip: the old primary rejoins, then a switchover back restores the initial layout."""
    from ragops.db.replication import topology
    from ragops.db.standby import rejoin, switchover

    config = cluster["config"]
    wait_streaming(cluster, cluster["replica"])
    switchover(config, "replica1")
    rejoin(config, "primary")
    back = switchover(config, "primary", rejoin_old=True)
    assert back.rejoined and back.rejoined["streaming"]
    statuses = {s.name: s for s in topology(config)}
    assert statuses["primary"].role == "primary" and statuses["primary"].timeline == 3
    assert statuses["replica1"].role == "replica" and statuses["replica1"].streaming


def test_synchronous_replication_configured(pg_dir):
    from ragops.db.replication import topology
    from ragops.db.standby import configure_sync
    from ragops.pg import pgctl

    c = make_cluster(pg_dir, synchronous=True)
    try:
        wait_streaming(c, c["replica"])
        result = configure_sync(c["config"])
        assert result.synchronous_standby_names == 'ANY 1 ("replica1")'
        from ragops.pg import pgctl

        def sync():
            return next(s for s in topology(c["config"]) if s.name == "replica1").sync_state == "quorum"
        assert pgctl.wait_until(sync, 15)
        with psycopg.connect(dsn(c, c["primary"]), autocommit=True) as conn:
            conn.execute("CREATE TABLE s (id int)")
            conn.execute("INSERT INTO s VALUES (1)")
    finally:
        for node in (c["replica"], c["primary"]):
            node.stop(mode="immediate")
        pgctl.remove_server_home(c["config"])


def test_cli_promote_needs_yes_without_terminal(cluster):
    from ragops.cli.main import main

    wait_streaming(cluster, cluster["replica"])
    code = main(["--config", str(cluster["path"]), "db", "promote", "replica1"])
    assert code == 5
    code = main(["--config", str(cluster["path"]), "db", "promote", "replica1", "--dry-run"])
    assert code == 0
    code = main(["--config", str(cluster["path"]), "--yes", "db", "promote", "replica1"])
    assert code == 0
    code = main(["--config", str(cluster["path"]), "--yes", "db", "rejoin", "primary"])
    assert code == 0
