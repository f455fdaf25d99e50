"""Root safety of the local platform's file handling (issue 13, items 1-3), without a server."""
from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from ragops.errors import OperationFailed
from ragops.pg import pgctl
from ragops.process import ManagedProcess, open_log, tail

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server account exists only when ragops runs as root")


@pytest.fixture
def open_tmp():
    """A 0755 temp dir under /tmp (pytest's own base is 0700, out of the server account's reach)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ragops-unit-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_open_log_refuses_a_planted_symlink(tmp_path):
    target = tmp_path / "root-only"
    target.write_text("original\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "blue.log").symlink_to(target)
    with pytest.raises(OperationFailed, match="symbolic link"):
        open_log(logs / "blue.log")
    proc = ManagedProcess("blue", tmp_path / "run", logs)
    with pytest.raises(OperationFailed, match="symbolic link"):
        proc.start(["true"])
    assert target.read_text() == "original\n"


def test_tail_does_not_follow_symlinks(tmp_path):
    target = tmp_path / "secret"
    target.write_text("do not show\n")
    (tmp_path / "db.log").symlink_to(target)
    assert tail(tmp_path / "db.log") == ""


def test_write_server_file_refuses_a_symlink(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("keep\n")
    (tmp_path / "postgresql.auto.conf").symlink_to(target)
    with pytest.raises(OperationFailed, match="symbolic link"):
        pgctl.write_server_file(tmp_path / "postgresql.auto.conf", "primary_conninfo = ''\n")
    assert target.read_text() == "keep\n"


def test_last_log_line_names_why_the_server_failed(tmp_path):
    log = tmp_path / "db-primary.log"
    log.write_text("LOG:  starting PostgreSQL 16\nFATAL:  could not create any TCP/IP sockets\n\n")
    node = pgctl.Node("primary", tmp_path / "data", 5999, log)
    assert node.last_log_line() == "FATAL:  could not create any TCP/IP sockets"
    assert pgctl.Node("x", tmp_path / "d", 1, tmp_path / "missing.log").last_log_line() == "(empty)"


@as_root
def test_prepare_dir_never_changes_modes_it_did_not_set(open_tmp):
    private = open_tmp / "home"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in (open_tmp, private)}
    with pytest.raises(OperationFailed, match=f"cannot reach .*{private} is mode 700"):
        pgctl.prepare_dir(private / "db" / "primary")
    assert not (private / "db").exists()            # stopped before the first change
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in before} == before


@as_root
def test_prepare_dir_gives_only_the_leaf_to_the_server_account(open_tmp):
    target = open_tmp / "srv" / "db" / "primary"
    pgctl.prepare_dir(target)
    entry = pwd.getpwnam(pgctl.PG_SYSTEM_USER)
    assert target.stat().st_uid == entry.pw_uid
    for created in (open_tmp / "srv", open_tmp / "srv" / "db"):
        assert created.stat().st_uid == 0 and stat.S_IMODE(created.stat().st_mode) == 0o755


@as_root
def test_blocked_dir_reports_the_first_unsearchable_parent(open_tmp):
    entry = pwd.getpwnam(pgctl.server_user())
    private = open_tmp / "p"
    private.mkdir()
    private.chmod(0o700)
    assert pgctl.blocked_dir(private / "venv" / "bin" / "pg_ctl", entry) == private
    private.chmod(0o711)
    assert pgctl.blocked_dir(private / "venv" / "bin" / "pg_ctl", entry) is None


@as_root
def test_unreachable_binaries_are_copied_into_the_server_home(open_tmp):
    private = open_tmp / "private"
    bin_dir = private / "venv" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pg_ctl").write_text("#!/bin/sh\n")
    (bin_dir / "pg_ctl").chmod(0o700)
    (private / "venv" / "pginstall" / "share").mkdir()
    (private / "venv.libs").mkdir()
    (private / "venv.libs" / "libpq.so").write_text("lib")
    private.chmod(0o700)
    home = open_tmp / "srv"
    copy = pgctl.reachable_bin_dir(bin_dir, home)
    assert copy == home / "pginstall" / "venv" / "pginstall" / "bin"
    assert stat.S_IMODE((copy / "pg_ctl").stat().st_mode) == 0o755
    assert (home / "pginstall" / "venv.libs" / "libpq.so").exists()   # $ORIGIN-relative libraries kept
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert pgctl.reachable_bin_dir(bin_dir, home) == copy               # unchanged source: no new copy


def test_managed_nodes_live_under_the_state_dir_for_a_normal_account(tmp_path, monkeypatch):
    from ragops.config import load_config
    from ragops.devstack import write_local_config

    monkeypatch.setattr(pgctl, "_running_as_root", lambda: False)
    config = load_config(write_local_config(tmp_path))
    node = pgctl.managed_node(config, "primary")
    assert node.data_dir == config.state_dir / "db" / "primary" and node.home is None
    assert node.log_file == config.state_dir / "logs" / "db-primary.log"
    assert pgctl.server_home(config) is None


def test_managed_nodes_live_in_the_server_home_as_root(tmp_path, monkeypatch):
    from ragops.config import load_config
    from ragops.devstack import write_local_config

    monkeypatch.setattr(pgctl, "_running_as_root", lambda: True)
    monkeypatch.setattr(pgctl, "SERVER_ROOT", tmp_path / "var-lib-ragops")
    config = load_config(write_local_config(tmp_path))
    home = pgctl.server_home(config, create=True)
    assert home.parent == tmp_path / "var-lib-ragops" / "ragtest" and home.name.startswith("test-")
    assert (config.state_dir / pgctl.SERVER_HOME_FILE).read_text().strip() == str(home)
    node = pgctl.managed_node(config, "replica1")
    assert node.data_dir == home / "db" / "replica1" and node.log_file == home / "logs" / "db-replica1.log"
    assert not str(node.log_file).startswith(str(config.state_dir))   # root's own logs stay apart
    (home / "db").mkdir(parents=True)
    assert pgctl.remove_server_home(config) == home
    assert not (tmp_path / "var-lib-ragops").exists()
    assert Path(tmp_path).exists()
