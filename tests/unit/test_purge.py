"""`down --purge` keeps backups and their key unless --purge-backups (issue 13 item 16)."""
from __future__ import annotations

import json

from ragops.cli.main import main
from ragops.devstack import write_local_config


def _env(tmp_path):
    state = tmp_path / "state"
    path = write_local_config(tmp_path, extra={"backups": {"storage": f"file://{state / 'backups'}",
                                                           "copy_to": f"file://{tmp_path / 'copies'}"}})
    (state / "backups").mkdir(parents=True)
    (state / "backups" / "20260101T000000.000Z.dump.zst.age").write_bytes(b"backup")
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "copy.age").write_bytes(b"copy")
    (state / "secrets").mkdir()
    (state / "secrets" / "backup-age-key").write_text("AGE-SECRET-KEY-1TEST\n")
    (state / "secrets" / "api-key").write_text("k\n")
    (state / "logs").mkdir()
    (state / "logs" / "blue.log").write_text("x\n")
    return path, state


def test_purge_keeps_backups_and_their_key(tmp_path, capsys):
    path, state = _env(tmp_path)
    assert main(["-c", str(path), "--yes", "down", "--purge"]) == 0
    captured = capsys.readouterr()
    assert (state / "backups" / "20260101T000000.000Z.dump.zst.age").read_bytes() == b"backup"
    assert (state / "secrets" / "backup-age-key").exists() and (tmp_path / "copies" / "copy.age").exists()
    assert not (state / "secrets" / "api-key").exists() and not (state / "logs").exists()
    assert f"keeping {state / 'backups'}" in captured.err and "--purge-backups" in captured.err


def test_purge_plan_lists_what_is_deleted_and_kept(tmp_path, capsys):
    path, state = _env(tmp_path)
    assert main(["-c", str(path), "--output", "json", "down", "--purge", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["delete"] == [str(state)]
    assert set(plan["keep"]) == {str(state / "backups"), str(state / "secrets" / "backup-age-key"),
                                 str(tmp_path / "copies")}
    assert (state / "logs" / "blue.log").exists(), "a dry run changes nothing"
    # without a terminal and without --yes the refusal names what would be deleted
    assert main(["-c", str(path), "down", "--purge"]) == 5
    assert str(state) in capsys.readouterr().err


def test_purge_backups_deletes_them_by_name(tmp_path, capsys):
    path, state = _env(tmp_path)
    assert main(["-c", str(path), "down", "--purge-backups"]) == 2
    assert main(["-c", str(path), "--yes", "down", "--purge", "--purge-backups"]) == 0
    assert not state.exists() and not (tmp_path / "copies").exists()
