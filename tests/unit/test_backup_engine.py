"""Unit tests of the backup engine's pure parts: retention, ids, manifests, stream adapters,
file storage commit/abort, the key file."""
from __future__ import annotations

import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from ragops.backup import catalog as bk
from ragops.backup.checks import check_object
from ragops.backup.pipeline import ChunkReader, Meter
from ragops.backup.retention import plan_retention
from ragops.backup.storage import FileStorage, put_stream
from ragops.errors import OperationFailed, UsageError

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def _ids(times):
    return [(bk.new_backup_id(t), t, False) for t in times]


# ---- ids --------------------------------------------------------------------------------------

def test_ids_sort_by_time_and_are_unique_within_a_millisecond():
    moment = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    a = bk.new_backup_id(moment)
    b = bk.new_backup_id(moment)       # same instant: still unique, still ordered
    c = bk.new_backup_id(moment + timedelta(seconds=1))
    assert a.startswith("20250102T030405.678Z-") and b.startswith("20250102T030405.679Z-")
    assert a < b < c and bk.ID_RE.match(a) and bk.ID_RE.match("20250102T030405.678Z"), "old ids stay valid"
    assert bk.id_time(a) == moment == bk.id_time("20250102T030405.678Z")


def test_ids_order_across_days_months_years():
    times = [datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC),
             datetime(2025, 10, 1, tzinfo=UTC)]
    ids = [bk.new_backup_id(t) for t in times]
    assert ids == sorted(ids)


# ---- retention --------------------------------------------------------------------------------

def test_keep_last_only():
    backups = _ids([NOW - timedelta(days=d) for d in range(10)])
    keep, delete = plan_retention(backups, NOW, keep_last=3, hourly_hours=0, daily_days=0)
    newest = sorted(b[0] for b in backups)[-3:]
    assert set(keep) == set(newest) and len(delete) == 7


def test_hourly_keeps_newest_per_hour_within_window():
    times = [NOW - timedelta(minutes=m) for m in (5, 20, 70, 80, 130, 60 * 30)]
    backups = _ids(times)
    keep, delete = plan_retention(backups, NOW, keep_last=1, hourly_hours=3, daily_days=0)
    by_time = {t: i for i, t, _ in backups}
    # hours 12:xx (5, 20 min ago -> 11:55, 11:40 are hour 11!) compute directly:
    expected = {by_time[NOW - timedelta(minutes=5)],        # newest (keep_last and hour 11)
                by_time[NOW - timedelta(minutes=70)],       # hour 10
                by_time[NOW - timedelta(minutes=130)]}      # hour 09
    assert set(keep) == expected
    assert by_time[NOW - timedelta(minutes=20)] in delete   # same hour as a newer one
    assert by_time[NOW - timedelta(hours=30)] in delete     # outside the hourly window


def test_daily_keeps_newest_per_day_for_d_days():
    times = [NOW - timedelta(days=d, hours=h) for d in range(40) for h in (1, 5)]
    backups = _ids(times)
    keep, delete = plan_retention(backups, NOW, keep_last=1, hourly_hours=0, daily_days=30)
    kept_days = {t.date() for i, t, _ in backups if i in keep}
    assert len(kept_days) == len(keep)                      # one per day
    assert min(kept_days) >= (NOW - timedelta(days=30)).date()
    assert all(i in delete for i, t, _ in backups if NOW - t > timedelta(days=31))


def test_newest_verified_is_never_deleted():
    times = [NOW - timedelta(days=d) for d in range(5)]
    backups = [(bk.new_backup_id(t), t, d == 4) for d, t in enumerate(times)]   # only the oldest verified
    keep, delete = plan_retention(backups, NOW, keep_last=1, hourly_hours=0, daily_days=0)
    oldest = backups[-1][0]
    assert oldest in keep and "newest verified" in keep[oldest]
    assert len(delete) == 3


def test_retention_with_no_backups():
    assert plan_retention([], NOW, 7, 24, 30) == ({}, [])


# ---- manifests --------------------------------------------------------------------------------

def _manifest(**over) -> bk.Manifest:
    fields = dict(id="20250101T000000.000Z", project="p", environment="e", database="rag", server_version="16.2",
                  started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:00:05Z", duration_seconds=5.0,
                  wal_lsn="0/3000000", wal_file="000000010000000000000003", raw_bytes=100, stored_bytes=50,
                  sha256="ab" * 32, compression={"algorithm": "zstd", "level": 3},
                  encryption={"format": "age", "key_id": "age-0123456789abcdef"},
                  row_counts={"documents": 3}, ragops_version="0.1.0", label="x")
    fields.update(over)
    return bk.Manifest(**fields)


def test_manifest_roundtrip_ignores_unknown_fields():
    m = _manifest()
    data = json.loads(bk.manifest_bytes(m))
    data["added_by_a_newer_version"] = True
    assert bk.Manifest.from_dict(data) == m


def test_manifest_missing_required_field_is_an_error():
    data = _manifest().to_dict()
    del data["sha256"]
    with pytest.raises(OperationFailed, match="missing sha256"):
        bk.Manifest.from_dict(data)


def test_manifest_has_no_key_material():
    text = bk.manifest_bytes(_manifest()).decode()
    assert "AGE-SECRET-KEY" not in text and "password" not in text


def _store_backup(storage, m: bk.Manifest, data: bytes = b"payload", manifest: bool = True):
    storage.put_bytes(f"{m.id}/{bk.DATA}", data)
    if manifest:
        storage.put_bytes(f"{m.id}/{bk.MANIFEST}", bk.manifest_bytes(m))


def test_only_backups_with_a_manifest_exist(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    _store_backup(storage, _manifest(id="20250101T000000.000Z"))
    _store_backup(storage, _manifest(id="20250102T000000.000Z"), manifest=False)
    entries = bk.manifests(storage)
    assert [m.id for m, _ in entries] == ["20250101T000000.000Z"]
    assert bk.resolve(storage, "latest").id == "20250101T000000.000Z"
    with pytest.raises(OperationFailed, match="does not exist"):
        bk.resolve(storage, "20250102T000000.000Z")
    with pytest.raises(UsageError):
        bk.resolve(storage, "../etc")


def test_check_object_names_the_object_on_mismatch(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    import hashlib

    data = b"hello world" * 100
    m = _manifest(stored_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    _store_backup(storage, m, data)
    assert check_object(storage, m, None).ok
    path = tmp_path / m.id / bk.DATA
    raw = bytearray(path.read_bytes())
    raw[10] ^= 1
    path.write_bytes(bytes(raw))
    check = check_object(storage, m, None)
    assert not check.ok and str(path) in check.detail and "mismatch" in check.detail


# ---- adapters and storage ---------------------------------------------------------------------

def test_chunk_reader_reads_any_sizes():
    reader = ChunkReader([b"abc", b"", b"defgh", b"i"])
    out = b""
    while piece := reader.read(2):
        out += piece
    assert out == b"abcdefghi"


def test_meter_reports_rate_eta_elapsed():
    lines = []
    meter = Meter(lines.append, "restored", total=1000, interval=0)
    meter.add(500)
    assert "restored 500 B of 1.0 KB (50%)" in lines[-1] and "ETA" in lines[-1] and "elapsed" in lines[-1]


def test_file_writer_commits_atomically_and_abort_leaves_nothing(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    with pytest.raises(RuntimeError), storage.writer("a/obj") as out:
        out.write(b"partial")
        assert not (tmp_path / "a" / "obj").exists()
        raise RuntimeError("boom")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    size, digest = put_stream(storage, "a/obj", iter([b"x" * 10, b"y" * 5]))
    assert size == 15 and storage.get_bytes("a/obj") == b"x" * 10 + b"y" * 5
    assert [o.key for o in storage.list()] == ["a/obj"] and storage.pending_uploads() == []


def test_partial_files_are_pending_not_objects(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    writer = storage.writer("20250101T000000.000Z/backup.dump.zst.age")
    writer.write(b"half")
    writer.handle.flush()          # as if the process were killed here
    assert storage.list() == []
    assert len(storage.pending_uploads()) == 1
    storage.abort_pending(storage.pending_uploads()[0])
    assert storage.pending_uploads() == [] and not any(tmp_path.iterdir())


def test_storage_key_cannot_escape(tmp_path):
    with pytest.raises(UsageError):
        FileStorage("file://x", tmp_path / "s").path("../../etc/passwd")


# ---- crypto -----------------------------------------------------------------------------------

class _Cfg:
    def __init__(self, tmp_path):
        from ragops.config import BackupsConfig

        self.backups = BackupsConfig()
        self.env_name = "local"
        self.state_dir = tmp_path

        class E:
            platform = "local"
        self.env = E()


def test_local_key_is_generated_once_with_mode_0600_and_key_id_is_public(tmp_path):
    from ragops.db.crypto import decrypt_stream, encrypt_stream, load_key
    from ragops.secrets import redact

    cfg = _Cfg(tmp_path)
    key = load_key(cfg)
    path = tmp_path / "secrets" / "backup-age-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(cfg).key_id == key.key_id and key.key_id.startswith("age-")
    assert "AGE-SECRET-KEY" not in key.key_id
    assert redact(path.read_text().strip()) == "***"      # registered with the redactor
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(b"secret data" * 1000), out, key)
    back = io.BytesIO()
    decrypt_stream(io.BytesIO(out.getvalue()), back, key, "obj")
    assert back.getvalue() == b"secret data" * 1000


def test_check_key_tells_wrong_key_from_damage(tmp_path):
    import pyrage
    from pyrage import x25519

    from ragops.db.crypto import Key, check_key, key_id_of

    def make():
        ident = x25519.Identity.generate()
        return Key(ident, ident.to_public(), key_id_of(ident.to_public()))

    right, wrong = make(), make()
    blob = pyrage.encrypt(os.urandom(300_000), [right.recipient])
    check_key(blob[:128 * 1024], right, "obj", whole=False)
    with pytest.raises(OperationFailed, match="wrong key"):
        check_key(blob[:128 * 1024], wrong, "obj", whole=False)
    damaged = bytearray(blob)
    damaged[5000] ^= 1                                      # inside the first payload chunk
    with pytest.raises(OperationFailed, match="damaged"):
        check_key(bytes(damaged[:128 * 1024]), right, "obj", whole=False)
    header = bytearray(blob)
    header[60] ^= 1                                         # inside the header
    with pytest.raises(OperationFailed, match="obj: "):
        check_key(bytes(header[:128 * 1024]), right, "obj", whole=False)
