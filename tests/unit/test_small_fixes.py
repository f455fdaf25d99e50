"""Issue 13 item 11: what `down --purge`, `dns status`, `drill run` and every --help say."""
from __future__ import annotations

import re

from ragops.cli.main import main
from ragops.devstack import write_local_config


def _all_commands():
    from typer.main import get_command

    import ragops.cli.app as cli_app

    cli_app.register_commands()
    paths = []

    def walk(command, prefix):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, prefix + [name])
        paths.append(prefix)
    walk(get_command(cli_app.app), [])
    return paths


def test_every_help_keeps_examples_one_per_paragraph(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "dumb")
    bad = []
    paths = _all_commands()
    for path in paths:
        main([*path, "--help"])
        out = capsys.readouterr().out
        for paragraph in re.split(r"\n\s*\n", out):
            lines = [line.strip(" │") for line in paragraph.strip().splitlines()]
            if " ".join(lines).count("Example:") > 1 or any("Example:" in ln and not ln.startswith("Example:")
                                                              for ln in lines):
                bad.append(" ".join(path))
    assert len(paths) > 40 and bad == []


def test_purge_of_a_stopped_stack_says_nothing_was_running(tmp_path, capsys):
    path = write_local_config(tmp_path)
    (tmp_path / "state" / "secrets").mkdir(parents=True)
    assert main(["-c", str(path), "--yes", "down", "--purge"]) == 0
    out = capsys.readouterr().out
    assert "(nothing was running)" in out and "1 stopped" not in out
    assert f"deleted {tmp_path / 'state'}" in out and not (tmp_path / "state").exists()


def test_dns_status_without_dns_config_says_not_configured(tmp_path, capsys):
    path = write_local_config(tmp_path)
    assert main(["-c", str(path), "dns", "status"]) == 0
    assert "not configured" in capsys.readouterr().out
    assert main(["-c", str(path), "--output", "json", "dns", "status"]) == 0
    assert '"configured": false' in capsys.readouterr().out


def test_unknown_drill_lists_only_drills(tmp_path, capsys):
    path = write_local_config(tmp_path)
    assert main(["-c", str(path), "--yes", "drill", "run", "no-such-drill"]) == 2
    err = capsys.readouterr().err
    assert "no drill named 'no-such-drill'" in err and "backup-restore" in err
    assert "pre-deploy" not in err and "post-deploy" not in err


def test_backup_create_and_verify_take_physical_as_the_issue_spells_them(tmp_path, capsys):
    path = write_local_config(tmp_path)
    assert main(["-c", str(path), "backup", "create", "--physical", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "pg_basebackup -D - -Ft" in out and "manifest" in out
    assert main(["-c", str(path), "backup", "verify", "--to-time", "2026-11-29T18:00:00Z", "latest"]) == 2
    assert "--to-time needs --physical" in capsys.readouterr().err
