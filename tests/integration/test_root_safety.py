"""As root next to the PostgreSQL account (issue 13, items 1-3), with real PostgreSQL, Traefik and uvicorn.

The clone (state dir) and a venv-like copy of the PostgreSQL binaries sit under a 0700 directory,
as they do under most people's home. ragops must work there without changing any mode, and the
server account must not be able to redirect root's writes.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from tests.conftest import need, server_tmpdir

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="the PostgreSQL account exists only as root")]


def _modes(paths) -> dict[str, int]:
    return {str(p): stat.S_IMODE(p.stat().st_mode) for p in paths}


def test_private_home_up_deploy_purge_keep_modes_and_symlinks_do_not_redirect_root(tmp_path):
    from ragops.config import load_config
    from ragops.devstack import write_local_config
    from ragops.pg import pgctl
    from tests.integration.conftest import Stack

    try:
        source = pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001
        need(False, f"PostgreSQL binaries ({exc})")
    base = server_tmpdir("roothome")
    home = base / "home"                      # like /root or /home/alice: 0700
    home.mkdir()
    venv = home / "venv" / "site-packages"
    shutil.copytree(source.parent, venv / source.parent.parent.name / source.parent.name, symlinks=True,
                    ignore=shutil.ignore_patterns("include"))
    libs = source.parent.parent.parent / f"{source.parent.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, venv / libs.name, symlinks=True)
    clone = home / "clone"
    clone.mkdir()
    bin_copy = venv / source.parent.parent.name / source.parent.name / "bin"
    config_path = write_local_config(clone, extra={"database": {"bin_dir": str(bin_copy)}})
    home.chmod(0o700)
    existing = [Path("/"), Path("/var"), Path("/var/lib"), Path("/tmp"), base, home, clone, venv, bin_copy]
    before = _modes(existing)
    stack = Stack(config_path, clone / "state", "", "")
    try:
        stack.cli("up", check=True, timeout=240)
        assert _modes(existing) == before, "ragops changed the mode of a directory it did not create"
        config = load_config(config_path)
        server_home = pgctl.server_home(config)
        assert server_home and (server_home / "db" / "primary" / "PG_VERSION").exists()

        # item 1: root's own logs stay in a directory only root can change
        logs = stack.state_dir / "logs"
        assert logs.stat().st_uid == 0 and not logs.stat().st_mode & 0o022
        target = base / "root-only"
        target.write_text("original\n")
        target.chmod(0o600)
        account = os.stat(server_home / "logs")      # the server account owns only its own log directory
        assert account.st_uid != 0 and (server_home / "logs" / "db-primary.log").exists()

        # a logs directory an older ragops gave to the server account, and the link the account planted
        # there (made here as root: the 0700 home keeps the account out, as it would keep most users out)
        os.chown(logs, account.st_uid, account.st_gid)
        (logs / "green.log").unlink(missing_ok=True)
        os.symlink(target, logs / "green.log")
        os.lchown(logs / "green.log", account.st_uid, account.st_gid)
        refused = stack.cli("deploy", "--version", "v2", "--yes", timeout=240)
        assert refused.returncode != 0 and "symbolic link" in refused.stderr, refused.stderr
        assert target.read_text() == "original\n"
        assert logs.stat().st_uid == 0, "the logs directory must be root's again"
        (logs / "green.log").unlink()
        stack.cli("abort", "--yes", timeout=120)
        stack.cli("deploy", "--version", "v2", "--yes", check=True, timeout=240)
        assert target.read_text() == "original\n"
        stack.cli("backup", "create", check=True, timeout=240)
        assert _modes(existing) == before

        stack.cli("down", "--purge", "--yes", check=True, timeout=240)
        assert _modes(existing) == before
        assert not server_home.exists()
        kept = sorted(str(p.relative_to(stack.state_dir)) for p in stack.state_dir.rglob("*") if p.is_file())
        assert kept == ["secrets/backup-age-key"], "purge keeps only the backups' key (and the backups)"
        assert any((clone / "backups").iterdir())
        stack.cli("down", "--purge", "--purge-backups", "--yes", check=True, timeout=240)
        assert not stack.state_dir.exists() and not (clone / "backups").exists()
    finally:
        stack.cli("down", "--purge", "--yes", timeout=240)
        shutil.rmtree(base, ignore_errors=True)


def test_pg_ctl_failure_names_the_log_and_its_last_line():
    from ragops.errors import OperationFailed
    from ragops.netutil import free_port
    from ragops.pg import pgctl

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001
        need(False, f"PostgreSQL binaries ({exc})")
    base = server_tmpdir("pgfail")
    port = free_port()
    node = pgctl.Node("primary", base / "primary", port, base / "logs" / "db-primary.log", home=base)
    busy = socket.socket()
    try:
        node.init_primary("postgres", "pw-test")
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        with pytest.raises(OperationFailed) as caught:
            node.start(timeout=20)
        message = str(caught.value)
        assert str(node.log_file) in message
        assert node.last_log_line() in message and node.last_log_line() != "(empty)"
    finally:
        busy.close()
        node.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
