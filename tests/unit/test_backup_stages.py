"""The backup stage interfaces: a round trip through the pipeline with zstd + age, the stage
names a manifest records, and old or unknown names in a manifest."""
from __future__ import annotations

import io
import json
import os
import sys

import pytest

from ragops.backup import pipeline
from ragops.backup.catalog import Manifest, manifest_bytes, stages_of
from ragops.backup.compressors import Zstd, get_compressor
from ragops.backup.crypters import Age, get_crypter
from ragops.backup.pipeline import CommandReader, CountingReader, Meter
from ragops.backup.storage import FileStorage
from ragops.errors import OperationFailed


def _age():
    from pyrage import x25519

    from ragops.db.crypto import Key, key_id_of

    ident = x25519.Identity.generate()
    return Age(Key(ident, ident.to_public(), key_id_of(ident.to_public())))


class BytesReader:
    """A reader stage over bytes; `fail` makes finish() fail like a dump that exited non-zero."""
    name = "bytes"

    def __init__(self, data: bytes, fail: bool = False):
        self.stream = CountingReader(io.BytesIO(data))
        self.fail = fail

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def finish(self):
        if self.fail:
            raise OperationFailed("bytes failed: exit 1")


class BytesSink:
    name = "bytes"

    def __init__(self):
        self.stdin = io.BytesIO()
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def close_input(self):
        self.closed = True

    def finish(self, error=None):
        if error is not None:
            raise OperationFailed(error)


def _manifest(**over) -> Manifest:
    fields = dict(id="20250101T000000.000Z", project="p", environment="e", database="rag", server_version="16.2",
                  started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:00:05Z", duration_seconds=5.0,
                  wal_lsn="0/3000000", wal_file=None, raw_bytes=100, stored_bytes=50, sha256="ab" * 32,
                  compression={"algorithm": "zstd", "level": 3}, encryption={"format": "age", "key_id": "age-x"},
                  row_counts={}, ragops_version="0.1.0")
    fields.update(over)
    return Manifest(**fields)


def test_round_trip_through_the_pipeline_with_zstd_and_age(tmp_path):
    import hashlib

    data = os.urandom(300_000) + b"compressible " * 200_000          # several age chunks and pipe sizes
    storage = FileStorage("file://x", tmp_path)
    crypter, compressor = _age(), Zstd(3)
    stored = pipeline.store(BytesReader(data), compressor, crypter, storage, "b/obj")
    blob = storage.get_bytes("b/obj")
    assert stored.raw_bytes == len(data) and stored.stored_bytes == len(blob) < len(data)
    assert stored.sha256 == hashlib.sha256(blob).hexdigest()
    assert blob.startswith(b"age-encryption.org/v1")
    sink = BytesSink()
    pipeline.restore(storage.read_chunks("b/obj"), crypter, compressor, sink, "b/obj", Meter(None, "restored"))
    assert sink.stdin.getvalue() == data and sink.closed


def test_a_failing_reader_stores_nothing(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    with pytest.raises(OperationFailed, match="bytes failed"):
        pipeline.store(BytesReader(b"x" * 1000, fail=True), Zstd(), _age(), storage, "b/obj")
    assert storage.list() == [] and storage.pending_uploads() == []


def test_command_reader_is_a_stage_and_its_exit_status_counts(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    ok = CommandReader("printer", [sys.executable, "-c", "import sys; sys.stdout.write('y' * 100000)"], dict(os.environ))
    stored = pipeline.store(ok, Zstd(), _age(), storage, "a/obj")
    assert stored.raw_bytes == 100000
    bad = CommandReader("broken", [sys.executable, "-c", "import sys; sys.stderr.write('error: no luck'); sys.exit(3)"],
                        dict(os.environ))
    with pytest.raises(OperationFailed, match="broken failed: error: no luck"):
        pipeline.store(bad, Zstd(), _age(), storage, "b/obj")
    assert [o.key for o in storage.list()] == ["a/obj"]


def test_damaged_object_fails_restore_with_the_object_named(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    crypter = _age()
    pipeline.store(BytesReader(os.urandom(200_000)), Zstd(), crypter, storage, "b/obj")
    path = tmp_path / "b" / "obj"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(OperationFailed, match="b/obj"):
        pipeline.restore(storage.read_chunks("b/obj"), crypter, Zstd(), BytesSink(), "b/obj", Meter(None, "r"))


def test_manifest_records_the_stage_names():
    crypter, compressor = _age(), Zstd(5)
    m = _manifest(compression=compressor.manifest_fields(), encryption=crypter.manifest_fields())
    data = json.loads(manifest_bytes(m))
    assert data["compression"] == {"algorithm": "zstd", "level": 5}
    assert data["encryption"]["format"] == "age" and data["encryption"]["key_id"] == crypter.key_id
    assert m.compressor_name == "zstd" and m.crypter_name == "age"


def test_old_manifest_without_stage_names_means_zstd_and_age():
    data = _manifest().to_dict()
    del data["compression"]
    data["encryption"] = {"key_id": "age-x"}
    m = Manifest.from_dict(data)
    assert m.compressor_name == "zstd" and m.crypter_name == "age"


def test_unknown_compressor_in_a_manifest_is_an_error_naming_it():
    m = _manifest(compression={"algorithm": "lz4", "level": 1})
    with pytest.raises(OperationFailed, match=r"manifest 20250101T000000.000Z: unknown compressor 'lz4'"):
        stages_of(object(), m)


def test_unknown_crypter_in_a_manifest_is_an_error_naming_it():
    m = _manifest(encryption={"format": "gpg", "key_id": "x"})
    with pytest.raises(OperationFailed, match=r"unknown crypter 'gpg'"):
        stages_of(object(), m)


def test_registries_give_the_default_for_no_name():
    assert get_compressor(None, 7).name == "zstd" and get_compressor(None, 7).level == 7
    with pytest.raises(OperationFailed, match="unknown crypter 'rot13'"):
        get_crypter(object(), "rot13")
