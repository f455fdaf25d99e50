"""Incremental base backups without a server: which files are copied, what a restore removes, and
the chain that retention keeps and a restore checks (the real thing: tests/integration/test_pitr.py)."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ragops.errors import OperationFailed
from ragops.pitr.incremental import CONTROL, apply_links, chain_of, changed_files, snapshot_files

S = 1_000_000_000


def test_changed_files_compares_with_the_parent_list_and_its_start():
    parent = {"base/1/100": [8192, 10 * S], "base/1/101": [8192, 10 * S], "base/1/102": [8192, 10 * S]}
    now = {"base/1/100": [8192, 10 * S],          # as the parent saw it: unchanged
           "base/1/101": [16384, 10 * S],         # resized with the same mtime: copied
           "base/1/102": [8192, 99 * S],          # touched after the parent started: copied
           "base/1/103": [8192, 10 * S],          # not in the parent: copied
           CONTROL: [8192, 10 * S]}
    assert changed_files(now, parent, parent_start_ns=50 * S) == ["base/1/101", "base/1/102", "base/1/103", CONTROL]


def test_changed_files_after_a_full_backup_uses_its_start_time_with_a_margin():
    now = {"old": [1, 10 * S], "edge": [1, 49 * S], "new": [1, 60 * S]}
    assert changed_files(now, None, parent_start_ns=50 * S) == ["edge", "new"]   # within 2 s counts as changed


def test_snapshot_skips_what_the_server_rebuilds(tmp_path):
    for rel in ["base/1/100", "global/pg_control", "pg_wal/000000010000000000000001", "postmaster.pid",
                "base/1/pgsql_tmp/pgsql_tmp123.0", "pg_stat_tmp/global.stat", "backup_label"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert sorted(snapshot_files(tmp_path)) == ["base/1/100", "global/pg_control"]


def test_apply_links_removes_files_the_newest_backup_no_longer_lists(tmp_path):
    for rel in ["base/1/100", "base/1/200", "pg_wal/000000010000000000000001"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")

    newest = SimpleNamespace(physical={"incremental": {"files": {"base/1/100": [1, 0]}}})
    assert apply_links(tmp_path, newest) == 1
    assert (tmp_path / "base/1/100").exists() and not (tmp_path / "base/1/200").exists()
    assert os.listdir(tmp_path / "pg_wal") == []   # the full backup's old WAL: replay reads the archive


def _manifest(backup_id: str, chain: list[str] | None = None):
    from ragops.backup.catalog import Manifest

    physical = {"start_wal_file": "000000010000000000000003", "timeline": 1, "stop_time": "2026-01-01T00:00:00Z"}
    if chain is not None:
        physical["incremental"] = {"parent": chain[-1], "chain": chain, "files": {}}
    return Manifest(id=backup_id, project="p", environment="e", database="(cluster)", server_version="16",
                    started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:00Z", duration_seconds=1,
                    wal_lsn="0/3000028", wal_file=None, raw_bytes=1, stored_bytes=1, sha256="x",
                    compression={}, encryption={"format": "age"}, row_counts={}, ragops_version="0",
                    kind="physical", physical=physical)


def test_chain_is_checked_and_kept_by_retention(tmp_path):
    from ragops.backup.catalog import MANIFEST, manifest_bytes
    from ragops.backup.retention import _keep_chains
    from ragops.backup.storage import FileStorage

    store = FileStorage(f"file://{tmp_path}", tmp_path)
    full, first, second = "20260101T000000.000Z", "20260101T010000.000Z", "20260101T020000.000Z"
    store.put_bytes(f"{full}/{MANIFEST}", manifest_bytes(_manifest(full)))
    store.put_bytes(f"{first}/{MANIFEST}", manifest_bytes(_manifest(first, [full])))
    newest = _manifest(second, [full, first])
    store.put_bytes(f"{second}/{MANIFEST}", manifest_bytes(newest))
    assert [m.id for m in chain_of(store, newest)] == [full, first, second]
    keep = {second: ["one of the last 1"]}
    assert _keep_chains(store, keep, [full, first]) == []
    assert keep[full] == [f"in the chain of incremental {second}"]
    store.delete(f"{first}/{MANIFEST}")
    with pytest.raises(OperationFailed, match=f"needs {first}.*chain is broken"):
        chain_of(store, newest)
