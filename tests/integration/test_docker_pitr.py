"""Point-in-time recovery on the docker platform: the database containers (ragops/postgres:16)
archive WAL into a spool on this machine, the shipper sends it to file:// storage, a physical base
backup streams from the primary's container, and restores (to a time, to the end) rebuild a data
directory on this machine. One environment (primary + replica containers, a blue color) for the
module, through the real CLI, in this order: up archives (a switched segment reaches the storage,
no gap), base backup + PITR between two writes, promote the replica (its new timeline reaches the
archive and a restore to the end replays it), down drains the spool. Then a primary on an ssh host
(the loopback sshd): its spool is on that host and the shipper reads it through SFTP.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ragops.netutil import free_port
from tests.conftest import REPO, server_tmpdir
from tests.integration.conftest import _pair_port, run_sql
from tests.integration.test_docker import sshd  # noqa: F401 - the loopback sshd fixture
from tests.integration.test_docker_standalone import REPOSITORY, Env, engine  # noqa: F401 - the engine fixture

pytestmark = pytest.mark.integration

PROJECT = "ragpitr"


def write_env(directory: Path, host: str = "local", replicas: int = 1, **extra) -> Env:
    name = f"p{uuid.uuid4().hex[:6]}"
    body = {
        "platform": "docker", "hosts": [host], "state_dir": str(directory / "state"),
        "service": {"path": str(REPO / "service"), "image": REPOSITORY, "version": "v1", "port": _pair_port(),
                    "workers": 0, "startup_timeout": "60s"},
        "router": {"listen": f"127.0.0.1:{free_port()}", "api": f"127.0.0.1:{free_port()}",
                   "image": "ragops/traefik:local"},
        "database": {"primary": {"name": "primary", "port": free_port()},
                     "replicas": [{"name": f"replica{i + 1}", "port": free_port()} for i in range(replicas)]},
        "backups": {"storage": f"file://{directory / 'backups'}", "max_wal_lag": "120s",
                    "wal": {"poll_interval": "0.2s"}},
        **extra,
    }
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": PROJECT, "default_env": name, "environments": {name: body}},
                                   sort_keys=False))
    return Env(name, path, directory / "state", "", "")


@pytest.fixture(scope="module")
def env(engine):  # noqa: F811 - the imported fixture
    directory = server_tmpdir("dpitr")
    environment = write_env(directory)
    try:
        environment.cli("up", timeout=240)
        yield environment
    finally:
        environment.cli("down", "--purge", "--yes", check=False)
        shutil.rmtree(directory, ignore_errors=True)


def dsn(env: Env, node: str) -> str:
    """The superuser's conninfo for a node's container, as ragops reaches it (DockerHost.dial)."""
    from ragops.config import load_config
    from ragops.db.connect import node_dsn

    return node_dsn(load_config(env.config_path, env.name), node, dbname="postgres")


def storage(env: Env) -> Path:
    return env.config_path.parent / "backups"


def switch_and_wait_shipped(env: Env, node: str) -> str:
    """Close the node's current segment; poll until its sidecar (the commit point) is in the storage."""
    segment = run_sql(dsn(env, node), "SELECT pg_walfile_name(pg_current_wal_lsn())", "SELECT pg_switch_wal()",
                      "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")[0][0]
    sidecar = storage(env) / "wal" / segment[:8] / f"{segment}.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sidecar.exists():
        time.sleep(0.2)
    assert sidecar.exists(), (segment, sorted(p.name for p in (storage(env) / "wal").rglob("*")))
    return segment


def mark(env: Env, node: str, label: str) -> None:
    run_sql(dsn(env, node), "CREATE TABLE IF NOT EXISTS marks (id serial PRIMARY KEY, label text NOT NULL)",
            f"INSERT INTO marks (label) VALUES ('{label}')")


def restored_labels(env: Env, *args: str) -> tuple[dict, list[str]]:
    """`backup physical restore latest ARGS` into a new directory on this machine, kept running for a
    look at `marks`, then stopped. The result and the labels."""
    from ragops.config import load_config
    from ragops.pg import pgctl

    target, port = env.config_path.parent / f"restored-{secrets.token_hex(3)}", free_port()
    result = env.json("backup", "physical", "restore", "latest", *args, "--target-dir", str(target),
                      "--port", str(port), "--keep-running")
    password = env.secret("db-password")
    config = load_config(env.config_path, env.name)
    try:
        rows = run_sql(f"host=127.0.0.1 port={port} user={config.database.superuser} password={password} "
                       f"dbname=postgres", "SELECT label FROM marks ORDER BY id")
    finally:
        pgctl.Node("pitr-restore", target, port, target.parent / "x.log", home=pgctl.server_home(config)).stop(
            mode="immediate")
    return result, [row[0] for row in rows or []]


def test_up_archives_every_node_and_a_switched_segment_reaches_the_storage(engine, env):  # noqa: F811
    out = env.cli("up", "--dry-run")   # the plan names the archive
    assert "WAL archive: every database node archives into" in out.stdout + out.stderr
    spools = set()
    for node in ("primary", "replica1"):   # a replica too: promoted, it archives without a restart
        container = engine.containers.get(f"{PROJECT}-{env.name}-db-{node}")
        assert "archive_mode=on" in container.attrs["Config"]["Cmd"]
        spools |= {m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == "/var/lib/ragops-wal-spool"}
    assert len(spools) == 1, spools
    spool = Path(spools.pop())
    assert spool.is_relative_to(env.state_dir) and spool.stat().st_mode & 0o777 == 0o700
    mark(env, "primary", "archived")
    segment = switch_and_wait_shipped(env, "primary")
    sidecar = json.loads((storage(env) / "wal" / "00000001" / f"{segment}.json").read_text())
    assert sidecar["name"] == segment and sidecar["encryption"]
    assert not (spool / segment).exists()   # shipped, then taken out of the spool
    check = env.json("backup", "wal", "check")
    assert check["ok"] is True and check["gaps"] == [] and check["newest_segment"] >= segment


def test_physical_base_backup_then_pitr_on_this_machine_returns_exactly_the_first_write(env):
    manifest = env.json("backup", "create", "--physical")
    assert manifest["kind"] == "physical" and manifest["physical"]["timeline"] == 1
    first = "first-" + secrets.token_hex(3)
    mark(env, "primary", first)
    time.sleep(1.1)
    target = run_sql(dsn(env, "primary"),
                     "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
    time.sleep(1.1)
    mark(env, "primary", "second-" + first)
    switch_and_wait_shipped(env, "primary")
    check = env.json("backup", "wal", "check")
    assert check["gaps"] == [] and check["base_backups"] == 1
    result, labels = restored_labels(env, "--to-time", target)
    assert first in labels and "second-" + first not in labels, labels
    assert result["recovered_to"] is not None


def test_promoted_replica_archives_its_new_timeline(engine, env):  # noqa: F811
    before = "before-promote-" + secrets.token_hex(3)
    mark(env, "primary", before)
    env.json("db", "promote", "replica1", "--yes", timeout=180)
    after = "after-promote-" + secrets.token_hex(3)
    mark(env, "replica1", after)
    segment = switch_and_wait_shipped(env, "replica1")
    assert segment.startswith("00000002")
    assert (storage(env) / "wal" / "00000002" / "00000002.history.json").exists()
    check = env.json("backup", "wal", "check")   # the new timeline continues the count: no gap
    assert check["gaps"] == [] and check["newest_segment"] == segment, check
    result, labels = restored_labels(env, "--to-latest")
    assert before in labels and after in labels, labels


def test_down_drains_the_spool_and_stops_the_shipper(env):
    out = env.json("down")
    assert "stop wal-shipper" in out["steps"]
    spool = env.state_dir / "docker" / f"{PROJECT}-{env.name}" / "wal-spool"
    assert [name for name in os.listdir(spool) if not name.startswith(".")] == []
    from ragops.process import ManagedProcess

    assert not ManagedProcess("wal-shipper", env.state_dir / "run", env.state_dir / "logs").running()


def test_on_an_ssh_host_the_shipper_reads_the_spool_there_through_sftp(engine, sshd):  # noqa: F811
    directory = server_tmpdir("dpitr-ssh")
    remote = directory / "remote"
    ssh_env = write_env(directory, host=sshd.url, replicas=0, known_hosts=str(sshd.known_hosts),
                        docker={"ssh_key": str(sshd.key), "remote_dir": str(remote)})
    try:
        ssh_env.cli("up", timeout=240)
        spool = remote / f"{PROJECT}-{ssh_env.name}" / "wal-spool"   # on the ssh host (this machine here)
        assert spool.is_dir() and spool.stat().st_mode & 0o777 == 0o700
        mark(ssh_env, "primary", "over-ssh")
        segment = switch_and_wait_shipped(ssh_env, "primary")
        assert not (spool / segment).exists()
        check = ssh_env.json("backup", "wal", "check")
        assert check["ok"] is True and check["gaps"] == []
        assert "stop wal-shipper" in ssh_env.json("down")["steps"]
        assert [name for name in os.listdir(spool) if not name.startswith(".")] == []
    finally:
        ssh_env.cli("down", "--purge", "--yes", check=False)
        shutil.rmtree(directory, ignore_errors=True)
