"""Migration file discovery, versions and the breaking marker (no database)."""
from __future__ import annotations

import pytest

from ragops.db import migrate
from ragops.errors import OperationFailed


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
