"""The two-thread store pipeline (compressing thread | encrypt + hash + write): a failure on
either side is the one raised, nothing is committed, and no thread is left behind."""
from __future__ import annotations

import hashlib
import os
import threading

import pytest

from ragops.backup import pipeline
from ragops.backup.compressors import Zstd
from ragops.backup.storage import FileStorage
from ragops.errors import OperationFailed
from tests.unit.test_backup_stages import BytesReader, _age


class BrokenCompressor(Zstd):
    """Fails after the first chunks, as a damaged input or a full memory would in zstandard."""

    def compress(self, source):
        inner = super().compress(source)

        class Reader:
            calls = 0

            def read(self, n=-1):
                Reader.calls += 1
                if Reader.calls > 2:
                    raise OperationFailed("zstd: compression failed in the middle")
                return inner.read(n)
        return Reader()


class FailingWriterStorage(FileStorage):
    """A storage whose writer fails after the first megabyte (a full disk, a lost S3 connection)."""

    def writer(self, key):
        real = super().writer(key)
        write = real.write
        written = [0]

        def failing(data):
            written[0] += len(data)
            if written[0] > 1_000_000:
                raise OSError(28, "No space left on device")
            return write(data)
        real.write = failing
        return real


def _pump_threads() -> list[threading.Thread]:
    # the pump's stage threads (not, say, a notification sender another test's command left finishing)
    return [t for t in threading.enumerate() if t.name.startswith("ragops-") and t.name != "ragops-notify"]


def test_large_stream_round_trips_through_both_threads(tmp_path):
    data = os.urandom(3_000_000) + b"chunk text 0.123456," * 400_000   # many queue chunks
    storage = FileStorage("file://x", tmp_path)
    crypter = _age()
    stored = pipeline.store(BytesReader(data), Zstd(3), crypter, storage, "b/obj")
    blob = storage.get_bytes("b/obj")
    assert stored.raw_bytes == len(data) and stored.sha256 == hashlib.sha256(blob).hexdigest()
    sink_data = _restore(storage, crypter)
    assert sink_data == data
    assert _pump_threads() == []


def _restore(storage, crypter) -> bytes:
    from tests.unit.test_backup_stages import BytesSink

    sink = BytesSink()
    pipeline.restore(storage.read_chunks("b/obj"), crypter, Zstd(3), sink, "b/obj", pipeline.Meter(None, "r"))
    return sink.stdin.getvalue()


def test_a_failure_in_the_compressing_thread_is_raised_and_nothing_is_stored(tmp_path):
    storage = FileStorage("file://x", tmp_path)
    data = os.urandom(6_000_000)                  # incompressible: several 1 MiB chunks
    with pytest.raises(OperationFailed, match="zstd: compression failed in the middle"):
        pipeline.store(BytesReader(data), BrokenCompressor(3), _age(), storage, "b/obj")
    assert storage.list() == [] and storage.pending_uploads() == []
    assert _pump_threads() == []


def test_a_storage_failure_stops_the_compressing_thread(tmp_path):
    storage = FailingWriterStorage("file://x", tmp_path)
    data = os.urandom(20_000_000)                 # far more than the queue holds
    with pytest.raises(OperationFailed, match="No space left"):
        pipeline.store(BytesReader(data), Zstd(3), _age(), storage, "b/obj")
    assert storage.list() == []
    for thread in _pump_threads():
        thread.join(timeout=5)
    assert _pump_threads() == []
