"""The docker platform's WAL archive without an engine: where the spool is, what `up --dry-run`
says, an ssh host's spool (read through SFTP, reconnecting), the containers' archive settings, and
who owns the spool (root: the image's server uid, 0700; a normal user: the user, 2770 + group_add)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from ragops.config import load_config
from ragops.errors import ConfigError, OperationFailed
from ragops.pitr.wal import spool_dir
from ragops.platforms import docker_wal
from ragops.platforms.docker import DockerPlatform
from ragops.platforms.docker_hosts import LocalDir
from tests.unit.test_docker_db import _config


def _archive_lines(config) -> list[str]:
    return [line for line in DockerPlatform(config).plan_up() if line.startswith("WAL archive")]


def test_spool_is_under_the_hosts_directory_unless_configured(tmp_path):
    config = _config(tmp_path)
    assert spool_dir(config) == (tmp_path / "state" / "docker" / "demo-d" / "wal-spool").resolve()
    assert _archive_lines(config) == [f"WAL archive: every database node archives into {spool_dir(config)}, a "
                                      f"shipper process sends it to {config.backups.storage}"]
    configured = _config(tmp_path, backups={"wal": {"spool_dir": str(tmp_path / "spool")}})
    assert spool_dir(configured) == tmp_path / "spool"


def test_no_archive_when_switched_off_or_with_an_external_database(tmp_path):
    assert _archive_lines(_config(tmp_path, backups={"wal": {"enabled": False}})) == []
    assert _archive_lines(_config(tmp_path, database={"dsn": "${env:DSN}", "replicas": []})) == []


def test_ssh_host_archives_into_a_spool_on_that_host_and_refuses_a_local_spool_dir(tmp_path):
    hosts = ["ssh://root@127.0.0.1:2222"]
    assert _archive_lines(_config(tmp_path, hosts=hosts)) == [   # planned without connecting
        "WAL archive: every database node archives into ssh://root@127.0.0.1:2222:.ragops/demo-d/wal-spool, a "
        f"shipper process sends it to {load_config(tmp_path / 'ragops.yaml').backups.storage}"]
    assert _archive_lines(_config(tmp_path, hosts=hosts, backups={"wal": {"enabled": False}})) == []
    with pytest.raises(ConfigError, match=r"environments\.d\.backups\.wal\.spool_dir: a path on this machine, "
                                          r"but the database runs on ssh host ssh://root@127\.0\.0\.1:2222"):
        DockerPlatform(_config(tmp_path, hosts=hosts, backups={"wal": {"spool_dir": "/srv/spool"}})).plan_up()
    spool = DockerPlatform.wal_spool(_config(tmp_path, hosts=hosts, docker={"remote_dir": "/srv/ragops"}))
    assert isinstance(spool, docker_wal.SftpSpool) and str(spool) == "ssh://root@127.0.0.1:2222:/srv/ragops/demo-d/wal-spool"
    assert DockerPlatform.wal_spool(_config(tmp_path)) is None   # a local engine: a directory here


def test_container_settings_archive_into_the_mount_without_an_interpreter(tmp_path):
    config = _config(tmp_path, backups={"wal": {"archive_timeout": "10s"}})
    settings = docker_wal.container_settings(config, group_readable=False)
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "10"
    spool = docker_wal.SPOOL_MOUNT
    assert settings["archive_command"] == (f"cp %p {spool}/.%f.tmp && sync {spool}/.%f.tmp && "
                                           f"mv -f {spool}/.%f.tmp {spool}/%f")
    # a normal account reads the segments through the group
    assert (f"cp %p {spool}/.%f.tmp && chmod 0640 {spool}/.%f.tmp && sync {spool}/.%f.tmp"
            in docker_wal.container_settings(config, group_readable=True)["archive_command"])


def _host(tmp_path: Path, user: str = "10002:10002"):
    image = SimpleNamespace(attrs={"Config": {"User": user}})
    return SimpleNamespace(dir=LocalDir(tmp_path / "hostdir"), is_ssh=False, label="local",
                           client=SimpleNamespace(images=SimpleNamespace(get=lambda _name: image)))


def test_spool_as_root_belongs_to_the_images_server_account(tmp_path, monkeypatch):
    chowned = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "chown", lambda path, uid, gid, follow_symlinks=True: chowned.append((str(path), uid, gid)))
    options = docker_wal.prepare_spool(_config(tmp_path), _host(tmp_path, "10005:10006"), "ragops/postgres:16")
    spool = tmp_path / "hostdir" / "wal-spool"
    assert options == {"volumes": {str(spool): {"bind": docker_wal.SPOOL_MOUNT, "mode": "rw"}}, "group_readable": False}
    assert chowned == [(str(spool), 10005, 10006)]
    assert stat.S_IMODE(os.lstat(spool).st_mode) == 0o700


def test_spool_as_a_normal_user_stays_the_users_and_the_containers_join_its_group(tmp_path, monkeypatch):
    spool = tmp_path / "hostdir" / "wal-spool"
    if os.geteuid() == 0:   # play a normal user who made the spool at an earlier `up`
        spool.mkdir(parents=True)
        os.chown(spool, 1000, 1000)
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    options = docker_wal.prepare_spool(_config(tmp_path), _host(tmp_path), "ragops/postgres:16")
    assert options["group_add"] == [str(os.lstat(spool).st_gid)] and options["group_readable"] is True
    assert stat.S_IMODE(os.lstat(spool).st_mode) == 0o2770   # setgid: segments get the user's group


def test_a_symlink_in_place_of_the_spool_is_refused(tmp_path, monkeypatch):
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "hostdir" / "wal-spool").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(OperationFailed, match="is not a directory"):
        docker_wal.prepare_spool(_config(tmp_path), _host(tmp_path), "ragops/postgres:16")


def test_the_shipper_drops_base_backup_history_files_instead_of_keeping_them_forever(tmp_path):
    from ragops.pitr.wal import Shipper

    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "000000010000000000000004.00000028.backup").write_text("START WAL LOCATION: 0/4000028\n")
    (spool / ".000000010000000000000005.tmp").write_text("being copied")
    config = _config(tmp_path, backups={"storage": f"file://{tmp_path / 'store'}",
                                        "wal": {"spool_dir": str(spool)}})
    result = Shipper(config).ship_once()
    assert result.shipped == [] and result.failed == {}
    assert sorted(os.listdir(spool)) == [".000000010000000000000005.tmp"]   # a copy in progress stays


def test_a_container_started_with_other_archive_settings_or_spool_is_outdated(tmp_path):
    config = _config(tmp_path)
    settings = docker_wal.container_settings(config, group_readable=False)
    archive = {"settings": settings, "volumes": {"/srv/spool": {"bind": docker_wal.SPOOL_MOUNT, "mode": "rw"}}}

    def container(cmd: list[str], source: str | None = "/srv/spool"):
        mounts = [{"Source": "/var/lib/docker/volumes/x/_data", "Destination": "/var/lib/postgresql"}]
        if source:
            mounts.append({"Source": source, "Destination": docker_wal.SPOOL_MOUNT})
        return SimpleNamespace(attrs={"Config": {"Cmd": cmd}, "Mounts": mounts})

    current = [arg for key, value in {"wal_level": "replica", **settings}.items() for arg in ("-c", f"{key}={value}")]
    assert not docker_wal.outdated(container(current), archive)
    assert docker_wal.outdated(container(["-c", "wal_level=replica"], source=None), archive)   # before the archive
    assert docker_wal.outdated(container(current, source="/elsewhere"), archive)               # another spool
    assert docker_wal.outdated(container([a.replace("archive_timeout=30", "archive_timeout=5") for a in current]),
                               archive)
    assert docker_wal.outdated(container(current), {})                                           # switched off
    assert not docker_wal.outdated(container(["-c", "wal_level=replica"], source=None), {})


def test_the_sftp_spool_turns_connection_errors_into_oserror_and_reconnects(tmp_path):
    import paramiko

    connections = []

    class FakeSftp:
        def __init__(self, broken: bool):
            self.broken = broken

        def listdir(self, path):
            if self.broken:
                raise paramiko.SSHException("connection lost")
            return [docker_wal.posixpath.basename(path), "000000010000000000000003"]

        def remove(self, path):
            raise FileNotFoundError(path)

        def close(self):
            pass

    def connect():
        connections.append(len(connections))
        return SimpleNamespace(open_sftp=lambda: FakeSftp(broken=len(connections) == 1), close=lambda: None)

    spool = docker_wal.SftpSpool(SimpleNamespace(label="ssh://h", _connect_ssh=connect), "spool")
    with pytest.raises(OSError, match="ssh host ssh://h: connection lost"):
        spool.names()
    assert spool.names() == ["spool", "000000010000000000000003"] and connections == [0, 1]   # a new connection
    spool.remove("000000010000000000000003")   # gone already (another shipper): not an error
