"""The zstd stage compressing in the zstd command-line tool (when installed) or in-process: both
store objects that restore to the same bytes, the raw bytes are counted either way, a failing tool
is an error naming the stage, and no process, thread or pipe outlives the store."""
from __future__ import annotations

import hashlib
import os
import shutil
import threading

import pytest

from ragops.backup import compressors, pipeline
from ragops.backup.compressors import Zstd
from ragops.backup.storage import FileStorage
from ragops.errors import ConfigError, OperationFailed
from tests.unit.test_backup_stages import BytesReader, BytesSink, _age

needs_tool = pytest.mark.skipif(shutil.which("zstd") is None and not os.environ.get("RAGOPS_REQUIRE_INTEGRATION"),
                                reason="the zstd command-line tool is not installed")


def _leftover_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ragops-")]


def _round_trip(tmp_path, data: bytes) -> tuple[pipeline.Stored, bytes]:
    storage = FileStorage("file://x", tmp_path)
    crypter = _age()
    stored = pipeline.store(BytesReader(data), Zstd(3), crypter, storage, "b/obj")
    assert stored.sha256 == hashlib.sha256(storage.get_bytes("b/obj")).hexdigest()
    sink = BytesSink()
    pipeline.restore(storage.read_chunks("b/obj"), crypter, Zstd(3), sink, "b/obj", pipeline.Meter(None, "r"))
    return stored, sink.stdin.getvalue()


@needs_tool
def test_the_cli_compresses_and_the_object_restores_with_raw_bytes_counted(tmp_path, monkeypatch):
    started = []
    real = compressors._CommandCompressed.__init__

    def spy(self, argv, source):
        started.append(argv)
        real(self, argv, source)
    monkeypatch.setattr(compressors._CommandCompressed, "__init__", spy)
    data = os.urandom(2_500_000) + b"chunk text 0.123456," * 300_000
    stored, restored = _round_trip(tmp_path, data)
    assert started and started[0][0].endswith("zstd") and "-3" in started[0]
    assert restored == data and stored.raw_bytes == len(data) and stored.stored_bytes < len(data)
    assert _leftover_threads() == []


def test_without_the_cli_zstandard_compresses_in_process(tmp_path, monkeypatch):
    monkeypatch.setattr(compressors, "zstd_tool", lambda: None)
    monkeypatch.setattr(compressors._CommandCompressed, "__init__", lambda *a: pytest.fail("the CLI was used"))
    data = os.urandom(1_500_000) + b"abc" * 500_000
    stored, restored = _round_trip(tmp_path, data)
    assert restored == data and stored.raw_bytes == len(data)


def test_a_failing_tool_is_an_error_naming_zstd_and_nothing_is_stored(tmp_path, monkeypatch):
    tool = tmp_path / "zstd"
    tool.write_text("#!/bin/sh\nhead -c 1000 >/dev/null\necho 'zstd: error 70 : Write error : No space left' >&2\n"
                    "exit 1\n")
    tool.chmod(0o755)
    monkeypatch.setattr(compressors, "zstd_tool", lambda: str(tool))
    storage = FileStorage("file://x", tmp_path / "store")
    with pytest.raises(OperationFailed, match="zstd failed: zstd: error 70 : Write error"):
        pipeline.store(BytesReader(os.urandom(5_000_000)), Zstd(3), _age(), storage, "b/obj")
    assert storage.list() == [] and storage.pending_uploads() == []
    assert _leftover_threads() == []


@needs_tool
def test_a_command_reader_is_moved_into_the_tool_in_the_kernel_and_still_counted(tmp_path, monkeypatch):
    """pg_dump/pg_basebackup's stdout reaches zstd's stdin by os.splice (no copy through Python):
    the object restores to the command's exact output and raw_bytes is its length."""
    spliced = []
    real = os.splice

    def spy(*args):
        moved = real(*args)
        spliced.append(moved)
        return moved
    monkeypatch.setattr(os, "splice", spy)
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3_000_000) + b"chunk text 0.123456," * 200_000)
    reader = pipeline.CommandReader("cat", ["cat", str(source)], dict(os.environ))
    storage = FileStorage("file://x", tmp_path)
    crypter = _age()
    stored = pipeline.store(reader, Zstd(3), crypter, storage, "c/obj")
    sink = BytesSink()
    pipeline.restore(storage.read_chunks("c/obj"), crypter, Zstd(3), sink, "c/obj", pipeline.Meter(None, "r"))
    assert sink.stdin.getvalue() == source.read_bytes() and stored.raw_bytes == source.stat().st_size
    assert sum(spliced) == source.stat().st_size and spliced[-1] == 0
    assert _leftover_threads() == []


@needs_tool
def test_backups_compress_with_the_configured_worker_threads(tmp_path, monkeypatch):
    """backups.compression_threads (default 2) reaches the tool as -T<n>; the WAL shipper keeps one."""
    from pathlib import Path

    from ragops.backup.create import backup_stages
    from ragops.config import load_config
    from ragops.devstack import write_local_config
    from ragops.pitr.wal import Shipper

    config = load_config(write_local_config(tmp_path))
    compressor, _crypter, _storage, _copy = backup_stages(config, None, dry_run=True)
    started = []
    monkeypatch.setattr(compressors._CommandCompressed, "__init__", lambda self, argv, source: started.append(argv))
    compressor.compress(None)
    assert "-T2" in started[-1] and config.backups.compression_threads == 2
    Shipper(config).compressor.compress(None)
    assert "-T1" in started[-1]
    (tmp_path / "bad").mkdir()
    bad = write_local_config(tmp_path / "bad", extra={"backups": {"compression_threads": 0}})
    with pytest.raises(ConfigError, match=r"backups\.compression_threads"):
        load_config(Path(bad))
