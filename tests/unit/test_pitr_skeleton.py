"""The backup skeleton shared by `backup create` and `backup physical create` (ragops.backup.create):
lock while streaming, the copy to backups.copy_to, the manifest written last, the lock gone either way."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragops.backup.catalog import LOCK, MANIFEST, Manifest, iso
from ragops.backup.create import commit_backup
from ragops.backup.storage import FileStorage
from ragops.errors import OperationFailed


def _manifest(backup_id: str, started, data: bytes, storage: FileStorage) -> Manifest:
    import hashlib

    storage.put_bytes(f"{backup_id}/base.tar.zst.age", data)
    return Manifest(id=backup_id, project="p", environment="e", database="(cluster)", server_version="16.2",
                    started_at=iso(started), finished_at=iso(started), duration_seconds=0.5, wal_lsn="0/1",
                    wal_file=None, raw_bytes=3 * len(data), stored_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), compression={}, encryption={}, row_counts={},
                    ragops_version="t", object="base.tar.zst.age", kind="physical")


def test_the_manifest_is_written_last_and_copied_and_the_lock_is_gone(tmp_path: Path):
    storage, copy = FileStorage("file://a", tmp_path / "a"), FileStorage("file://b", tmp_path / "b")
    lines: list[str] = []
    seen: dict = {}

    def stream(backup_id: str, started) -> Manifest:
        seen["lock"] = storage.exists(f"{backup_id}/{LOCK}")
        seen["manifest"] = storage.exists(f"{backup_id}/{MANIFEST}")
        return _manifest(backup_id, started, b"x" * 100, storage)

    manifest = commit_backup(storage, copy, lines.append, "base backup of h:1/postgres into file://a", "read", stream)
    assert seen == {"lock": True, "manifest": False}
    assert not storage.exists(f"{manifest.id}/{LOCK}")
    for where in (storage, copy):
        stored = json.loads(where.get_bytes(f"{manifest.id}/{MANIFEST}"))
        assert stored["copies"] == ["file://b"] and stored["kind"] == "physical"
    assert copy.get_bytes(f"{manifest.id}/base.tar.zst.age") == b"x" * 100
    assert lines[0] == f"{manifest.id}: base backup of h:1/postgres into file://a"
    assert lines[-1] == f"{manifest.id}: done, 300 B read, 100 B stored in 0.5s"


def test_a_failed_stream_leaves_no_manifest_and_no_lock(tmp_path: Path):
    storage = FileStorage("file://a", tmp_path / "a")
    ids: list[str] = []

    def stream(backup_id: str, started) -> Manifest:
        ids.append(backup_id)
        raise OperationFailed("pg_basebackup failed: boom")

    with pytest.raises(OperationFailed, match="boom"):
        commit_backup(storage, None, None, "dumping", "dumped", stream)
    assert not storage.exists(f"{ids[0]}/{MANIFEST}") and not storage.exists(f"{ids[0]}/{LOCK}")
