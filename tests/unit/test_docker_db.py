"""The docker platform's database containers, without an engine: when they are used, how the
colors reach them, what `up --dry-run` says, and the mounted password file's modes."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from ragops.config import load_config
from ragops.errors import ConfigError
from ragops.platforms.docker import DockerPlatform
from ragops.platforms.docker_db import enabled
from ragops.platforms.docker_host import NoAddress
from ragops.platforms.docker_hosts import LocalDir


def _config(tmp_path: Path, **body):
    path = tmp_path / "ragops.yaml"
    env = {"platform": "docker", "state_dir": str(tmp_path / "state"),
           "database": {"primary": {"name": "primary", "port": 9620},
                        "replicas": [{"name": "replica1", "port": 9621}]}}
    env.update(body)
    path.write_text(yaml.safe_dump({"project": "demo", "default_env": "d", "environments": {"d": env}}))
    return load_config(path)


def test_containers_by_default_unless_an_external_dsn_or_switched_off(tmp_path):
    assert enabled(_config(tmp_path))
    assert not enabled(_config(tmp_path, database={"dsn": "${env:DSN}"}))
    assert not enabled(_config(tmp_path, database={"accessories": False}))
    with pytest.raises(ConfigError, match=r"environments\.d\.database\.accessories: true .* database\.dsn"):
        enabled(_config(tmp_path, database={"accessories": True, "dsn": "${env:DSN}"}))


def test_colors_reach_every_node_by_container_name_on_the_bridge_network(tmp_path):
    platform = DockerPlatform(_config(tmp_path))
    assert platform.database is not None
    dsn = platform.database.app_dsn()
    assert "host=demo-d-db-primary,demo-d-db-replica1 port=5432,5432" in dsn
    assert "target_session_attrs=read-write" in dsn
    host_mode = DockerPlatform(_config(tmp_path, docker={"network_mode": "host"}))
    assert "host=127.0.0.1,127.0.0.1 port=9620,9621" in host_mode.database.app_dsn()


def test_plan_names_containers_volumes_and_ports_without_an_engine(tmp_path):
    lines = DockerPlatform(_config(tmp_path)).plan_up()
    assert ("database node replica1: container demo-d-db-replica1 (ragops/postgres:16), volume "
            "demo-d-db-replica1-data, network demo-d (no port published)") in lines
    over_ssh = DockerPlatform(_config(tmp_path, hosts=["ssh://root@127.0.0.1:2222"])).plan_up()
    assert ("database node replica1: container demo-d-db-replica1 (ragops/postgres:16), volume "
            "demo-d-db-replica1-data, network demo-d (no port published)") in over_ssh
    host_mode = DockerPlatform(_config(tmp_path, docker={"network_mode": "host"})).plan_up()
    assert ("database node replica1: container demo-d-db-replica1 (ragops/postgres:16), volume "
            "demo-d-db-replica1-data, 127.0.0.1:9621") in host_mode


class FakeContainer:
    def __init__(self, name: str, address: str | None, network: str = "demo-d", project: str = "demo"):
        self.name = name
        self.labels = {"ragops.project": project, "ragops.env": "d", "ragops.instance": "demo-d"}
        self.status = "running" if address else "exited"
        networks = {network: {"IPAddress": address or ""}}
        self.attrs = {"NetworkSettings": {"Networks": networks if address is not None else {}}, "State": {}}


class FakeEngine:
    """containers.get of the docker SDK, by name."""

    def __init__(self, *containers: FakeContainer):
        self.found = {c.name: c for c in containers}
        self.containers = self

    def get(self, name: str):
        import docker

        if name not in self.found:
            raise docker.errors.NotFound(name)
        return self.found[name]


def test_ragops_dials_a_container_at_its_bridge_address_and_publishes_nothing_on_a_local_engine(tmp_path):
    platform = DockerPlatform(_config(tmp_path))
    host = platform.primary
    host.__dict__["client"] = FakeEngine(FakeContainer("demo-d-blue", "172.30.0.5"),
                                         FakeContainer("demo-d-green", None),                  # stopped
                                         FakeContainer("demo-d-db-primary", "172.30.0.2", project="other"))
    assert platform.color_url("blue") == "http://172.30.0.5:8000"
    assert platform.color_url("green") == "http://127.0.0.1:0"   # stopped: refused, not service.port+1
    with pytest.raises(NoAddress, match=r"container demo-d-db-primary is not running \(no address on network "):
        host.dial("demo-d-db-primary", 5432, 9620)                      # not ragops' container either
    state = platform.color_state("blue", probe=False)
    assert state.running and state.url == "http://172.30.0.5:8000" and state.port is None


def test_database_connections_go_through_the_platform(tmp_path):
    from ragops.db.connect import node_dsn
    from ragops.platforms.base import Platform

    config = _config(tmp_path)
    DockerPlatform._shared(config).primary.__dict__["client"] = FakeEngine(
        FakeContainer("demo-d-db-primary", "172.30.0.2"), FakeContainer("demo-d-db-replica1", "172.30.0.3"))
    assert "host=172.30.0.3 port=5432 " in node_dsn(config, "replica1")
    del DockerPlatform._shared(config).primary.client.found["demo-d-db-primary"]      # its container removed
    with pytest.raises(NoAddress, match="container demo-d-db-primary is not running"):
        node_dsn(config, "primary")
    assert DockerPlatform.database_node_at(config, "demo-d-db-primary", 5432) == "primary"
    assert DockerPlatform.database_node_at(config, "demo-d-db-primary", 9620) is None
    host_mode = _config(tmp_path, docker={"network_mode": "host"})
    assert "host=127.0.0.1 port=9621 " in node_dsn(host_mode, "replica1")        # no engine asked
    external = _config(tmp_path, database={"dsn": "${env:DSN}", "primary": {"name": "p", "host": "db.example",
                                                                            "port": 5433}})
    assert "host=db.example port=5433 " in node_dsn(external)
    assert Platform.database_address(config, config.database.primary) == ("127.0.0.1", 9620)


def test_password_file_is_readable_by_the_container_only_through_its_mount(tmp_path):
    directory = LocalDir(tmp_path / "host")
    directory.write_secret("secrets/pg-password", "s3cret\n")
    directory.write_secret("secrets/pg-password", "again\n")      # replaced atomically
    path = tmp_path / "host" / "secrets" / "pg-password"
    assert path.read_text() == "again\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["pg-password"]


def test_a_secondary_region_has_its_own_names_and_ports_on_the_same_network(tmp_path):
    config = _config(tmp_path, regions={
        "primary": {"database_node": "primary"},
        "secondary": {"database_node": "replica1", "router": "127.0.0.1:9602", "router_api": "127.0.0.1:9603",
                      "service_port": 9612}})
    default, region = DockerPlatform(config), DockerPlatform(config, region="secondary")
    assert default.region is None and default.secondary_regions() == ["secondary"]
    host = region.primary
    assert (host.instance, host.network) == ("demo-d-secondary", "demo-d")
    assert host.name("blue") == "demo-d-secondary-blue" and host.color_port("green") == 9613
    assert region.router_url() == "http://127.0.0.1:9602"
    assert region.database.app_dsn() == default.database.app_dsn()    # the same database containers
    assert DockerPlatform(config, region="primary").region is None   # the first region is the default


def test_switchover_rejoin_is_refused_before_any_change_where_nothing_can_rebuild_the_old_primary(tmp_path,
                                                                                                   monkeypatch):
    from ragops.db import standby
    from ragops.db.replication import NodeStatus
    from ragops.errors import UsageError

    nodes = [NodeStatus("primary", "127.0.0.1", 9620, "primary", reachable=True),
             NodeStatus("replica1", "127.0.0.1", 9621, "replica", reachable=True, streaming=True)]
    monkeypatch.setattr(standby, "topology", lambda config: nodes)
    changed: list[str] = []
    monkeypatch.setattr(standby, "fence_sql", lambda *a, **k: changed.append("fence") or "0/0")
    external = _config(tmp_path, database={"dsn": "${env:DSN}", "primary": {"name": "primary", "port": 9620},
                                           "replicas": [{"name": "replica1", "port": 9621}]})
    with pytest.raises(UsageError, match=r"--rejoin needs primary.s local data directory .*nothing was changed"):
        standby.switchover(external, "replica1", rejoin_old=True)
    assert changed == []
    assert DockerPlatform.rejoins_database_nodes(_config(tmp_path))        # the database containers
    assert not DockerPlatform.rejoins_database_nodes(external)


def test_over_ssh_ragops_tunnels_to_the_bridge_address_and_in_host_mode_to_the_loopback_port(tmp_path):
    remote = DockerPlatform(_config(tmp_path, hosts=["ssh://root@127.0.0.1:2222"])).primary
    remote.__dict__["client"] = FakeEngine(FakeContainer("demo-d-blue", "172.30.0.5"))
    tunnels: list[str] = []
    remote.reach = lambda address: tunnels.append(address) or "127.0.0.1:40001"   # type: ignore[method-assign]
    assert remote.color_url("blue") == "http://127.0.0.1:40001" and tunnels == ["172.30.0.5:8000"]
    host_mode = DockerPlatform(_config(tmp_path, docker={"network_mode": "host"})).primary
    assert host_mode.color_url("green") == "http://127.0.0.1:8101"                  # no engine asked
