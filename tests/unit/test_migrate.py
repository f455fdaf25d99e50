"""Migration file discovery, versions, the breaking marker and the deploy gate (no database)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ragops.errors import GateFailed, OperationFailed
from ragops.pg import migrate


def write(directory, name, body="SELECT 1;\n"):
    (directory / name).write_text(body)


def test_files_are_ordered_by_number_not_name(tmp_path):
    write(tmp_path, "0010_ten.sql")
    write(tmp_path, "0002_two.sql")
    write(tmp_path, "0001_one.sql")
    assert [n for _, n, _ in migrate.migration_files(tmp_path)] == ["0001_one.sql", "0002_two.sql", "0010_ten.sql"]
    assert migrate.latest_version(tmp_path) == 10


def test_empty_directory_is_version_zero(tmp_path):
    assert migrate.latest_version(tmp_path) == 0


@pytest.mark.parametrize("bad", ["init.sql", "01-init.sql", "0001 init.sql"])
def test_badly_named_file_is_refused(tmp_path, bad):
    write(tmp_path, bad)
    with pytest.raises(OperationFailed, match=r"NNNN_name\.sql"):
        migrate.migration_files(tmp_path)


def test_duplicate_version_is_refused(tmp_path):
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "001_b.sql")
    with pytest.raises(OperationFailed, match="version 1 is also used"):
        migrate.migration_files(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(OperationFailed, match="not found"):
        migrate.latest_version(tmp_path / "nope")


def test_breaking_marker_in_the_first_lines_only(tmp_path):
    write(tmp_path, "0001_safe.sql", "CREATE TABLE a (id int);\n")
    write(tmp_path, "0002_drop.sql", "-- Drop the old column.\n-- ragops: breaking\nALTER TABLE a DROP COLUMN id;\n")
    write(tmp_path, "0003_late.sql", "\n" * 10 + "-- ragops: breaking\n")
    names = ["0001_safe.sql", "0002_drop.sql", "0003_late.sql"]
    assert migrate.breaking_migrations(names, tmp_path) == ["0002_drop.sql"]
    assert migrate.breaking_migrations([tmp_path / "0002_drop.sql"], tmp_path / "elsewhere") == ["0002_drop.sql"]


def test_shipped_migrations_are_well_formed():
    directory = migrate.default_migrations_dir()
    files = migrate.migration_files(directory)
    assert files and files[0][0] == 1
    assert migrate.latest_version(directory) == files[-1][0]
    assert migrate.breaking_migrations([n for _, n, _ in files], directory) == []


# ---- the deploy preflight gate (a fake platform, no database) -------------------------------------

class _Platform:
    runs_migrations_in_preflight = True

    def __init__(self, tmp_path, ready=True):
        self.dir, self.ready = tmp_path, ready

    def journal_dir(self):
        return self.dir / "deploys"

    def lock_backend(self):
        return None

    def colors(self):
        from types import SimpleNamespace

        blue = SimpleNamespace(color="blue", version="v1", weight=100, running=True, ready=self.ready,
                               detail="schema version 2, this build accepts 1 to 1")
        return [blue, SimpleNamespace(color="green", version=None, weight=0, running=False, ready=False, detail="")]


def _gate(tmp_path, monkeypatch, pending, ready=True):
    from types import SimpleNamespace

    from ragops.db import bringup, connect
    from ragops.deploy.engine import Deployment, DeployOptions

    service = tmp_path / "elsewhere"
    (service / "migrations").mkdir(parents=True)
    monkeypatch.setattr(bringup, "live_primary", lambda config: SimpleNamespace(name="primary"))
    monkeypatch.setattr(connect, "node_dsn", lambda config, name: "dbname=x")
    monkeypatch.setattr(migrate, "pending_migrations", lambda dsn, directory: pending)
    config = SimpleNamespace(deploy=SimpleNamespace(lock_ttl=60, history_limit=50),
                             service=SimpleNamespace(path=str(service)), resolve_path=lambda p: Path(p))
    options = DeployOptions(version="v2", strategy="blue-green", steps=[100], step_pause=0.0)
    return Deployment(config, options, platform=_Platform(tmp_path, ready)), service / "migrations"


def test_gate_reads_breaking_marks_from_service_path_and_records_its_message(tmp_path, monkeypatch):
    deployment, migrations = _gate(tmp_path, monkeypatch, ["0002_drop.sql"])
    write(migrations, "0002_drop.sql", "-- ragops: breaking\nALTER TABLE a DROP COLUMN b;\n")
    with pytest.raises(GateFailed) as refused:
        deployment.preflight()
    assert "migration 0002_drop.sql is marked breaking" in refused.value.message
    assert "live color blue (v1)" in refused.value.message
    # the deploy's reason (run() finishes with the last step's detail) is the gate's message
    last = deployment.record["steps"][-1]
    assert last["ok"] is False and last["detail"] == refused.value.message


def test_unreadable_migration_is_a_refusal_not_an_operation_failure(tmp_path, monkeypatch):
    deployment, _ = _gate(tmp_path, monkeypatch, ["0002_missing.sql"])
    with pytest.raises(GateFailed, match=r"cannot read migration .*elsewhere/migrations/0002_missing\.sql"):
        deployment.preflight()


def test_unhealthy_live_color_refusal_is_the_recorded_reason(tmp_path, monkeypatch):
    deployment, _ = _gate(tmp_path, monkeypatch, [], ready=False)
    with pytest.raises(GateFailed, match="live color blue is not healthy") as refused:
        deployment.preflight()
    assert deployment.record["steps"][-1]["detail"] == refused.value.message
