"""The docker platform's logic that needs no engine: config, lock semantics across hosts, host-key
trust matching, and the all-hosts rollback of a router change."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ragops.config import load_config
from ragops.errors import ConfigError, OperationFailed
from ragops.platforms.docker_hosts import DirLock, LocalDir, MultiHostLock, _trusted


def write_config(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "demo", "default_env": "d",
                                    "environments": {"d": {"platform": "docker", **body}}}))
    return path


def test_docker_settings_validate_and_name_the_key(tmp_path):
    config = load_config(write_config(tmp_path, {"hosts": ["local", "ssh://deploy@10.0.0.2:2222"], "docker": {
        "network_mode": "host", "host_settings": {"ssh://deploy@10.0.0.2:2222": {"name_suffix": "h2"}},
        "accessories": {"redis": {"image": "redis:7", "port": 6379}}}}))
    assert config.env.docker.network_mode == "host"
    assert config.env.docker.host_settings["ssh://deploy@10.0.0.2:2222"].name_suffix == "h2"
    with pytest.raises(ConfigError, match="host_settings"):
        load_config(write_config(tmp_path, {"hosts": ["local"], "docker": {"host_settings": {"ssh://x@y": {}}}}))
    with pytest.raises(ConfigError, match="unknown key 'netmode'"):
        load_config(write_config(tmp_path, {"docker": {"netmode": "host"}}))


def test_default_host_is_the_local_engine(tmp_path):
    config = load_config(write_config(tmp_path, {}))
    assert config.env.hosts == ["local"]


def test_trust_host_keys_matches_host_and_port_only():
    url = "ssh://root@127.0.0.1:2222"
    assert _trusted(url, ["127.0.0.1:2222"])
    assert _trusted(url, ["[127.0.0.1]:2222"])
    assert not _trusted(url, ["127.0.0.1:22"])
    assert not _trusted(url, ["127.0.0.2:2222"])
    assert _trusted("ssh://root@db1", ["db1"])


def _lock(tmp_path: Path, name: str) -> DirLock:
    return DirLock(LocalDir(tmp_path / name))


def test_multi_host_lock_is_all_or_nothing(tmp_path):
    first, second = _lock(tmp_path, "a"), _lock(tmp_path, "b")
    lock = MultiHostLock([("a", first), ("b", second)])
    # someone holds the second host's lock: taking it fails and leaves the first host untouched
    assert second.create({"token": "other"})
    assert lock.create({"token": "mine"}) is False
    assert first.read() is None
    assert second.delete("other")
    assert lock.create({"token": "mine"}) is True
    assert first.read()["token"] == second.read()["token"] == "mine"
    assert lock.create({"token": "again"}) is False        # exclusive
    assert lock.replace("mine", {"token": "mine", "paused": True})
    assert first.read()["paused"] and second.read()["paused"]
    assert not lock.delete("wrong")
    assert lock.delete("mine") and lock.read() is None


class MemoryStore:
    def __init__(self):
        self.files: dict[str, str] = {}

    def read_text(self, name):
        return self.files.get(name)

    def write_text(self, name, text):
        self.files[name] = text

    def makedirs(self, name):
        pass


class FakeHost:
    def __init__(self, label):
        from ragops.routing.traefik_file import TraefikFileRouter

        self.label = label
        self.router = TraefikFileRouter(listen=":8080", api=":8081", store=MemoryStore(),
                                        reach=lambda: f"api-{self.label}")
        self.write_router({"blue": 100}, False)

    def write_router(self, weights, maintenance):
        self.router.apply({"blue": "http://b", "green": "http://g"}, weights, maintenance)


def test_set_weights_restores_every_host_when_one_router_does_not_confirm(monkeypatch):
    from ragops.platforms import docker as docker_platform
    from ragops.routing import traefik_file

    hosts = [FakeHost("local"), FakeHost("ssh://root@h2:22")]

    def wait_for_weights(api, expected, timeout):
        if api == "api-ssh://root@h2:22":
            raise OperationFailed("router did not apply weights within 1s")
        return 0.05

    monkeypatch.setattr(traefik_file, "wait_for_weights", wait_for_weights)
    platform = docker_platform.DockerPlatform.__new__(docker_platform.DockerPlatform)
    platform.hosts, platform.primary = hosts, hosts[0]
    with pytest.raises(OperationFailed) as caught:
        platform.set_weights({"green": 100, "blue": 0})
    assert "host ssh://root@h2:22" in caught.value.message
    assert "restored on local, ssh://root@h2:22" in caught.value.message
    for host in hosts:
        assert host.router.desired().weights == {"blue": 100}
    # and when every router confirms, every host serves the new weights
    hosts[1].label = "ok"
    assert platform.set_weights({"green": 100, "blue": 0}) == pytest.approx(0.05)
    assert all(h.router.desired().weights == {"green": 100} for h in hosts)


def test_cli_start_does_not_import_docker_or_paramiko():
    code = ("import sys; from ragops.cli.main import main; "
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'paramiko')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
