"""An archived WAL file is never replaced. A file the archive already holds is compared by content
(the spooled bytes against the stored object, decrypted): the same content is a no-op (a shipper killed
between its sidecar and the spool removal ships it again), different content is a conflict -- a second
database system or a restored copy archiving into this archive, or a reused timeline number. The
shipper then stops at that file (in order: nothing later overtakes it) and says so in
state_dir/wal-conflict.json, which `backup wal check` turns into exit 3 and a metric.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from ragops.errors import OperationFailed

MARKER = "wal-conflict.json"


def marker(config) -> Path:
    return config.state_dir / MARKER


def conflict(config) -> dict | None:
    try:
        data = json.loads(marker(config).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear(config) -> None:
    marker(config).unlink(missing_ok=True)


def _spooled_digest(spool, name: str) -> str:
    digest = hashlib.sha256()
    with spool.reader(name) as reader:
        while chunk := reader.stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _archived_digest(storage, crypter, compressor, name: str, data_key: str) -> str:
    out = io.BytesIO()
    writer = compressor.decompress(out)
    crypter.decrypt(io.BytesIO(b"".join(storage.read_chunks(data_key))), writer, f"WAL file {name}")
    writer.close()
    return hashlib.sha256(out.getvalue()).hexdigest()


def already_archived(shipper, name: str, data_key: str, sidecar_key: str) -> bool:
    """True: the archive holds this very content (drop it from the spool). OperationFailed: it holds other
    content under the same name (never overwritten)."""
    from ragops.backup.catalog import iso, now_utc
    from ragops.backup.compressors import get_compressor

    if not shipper.storage.exists(sidecar_key):
        return False
    ours = _spooled_digest(shipper.spool, name)
    try:
        theirs = _archived_digest(shipper.storage, shipper.crypter, get_compressor(None), name, data_key)
    except (OperationFailed, OSError) as exc:
        theirs = f"unreadable ({getattr(exc, 'message', exc)})"
    if ours == theirs:
        return True
    message = (f"WAL file {name} is already in the archive with different content (another database system or a "
               "restored copy archiving here, or a reused timeline number): it is never overwritten; the shipper "
               "stops at it until someone resolves it")
    from ragops.journal import write_json

    write_json(marker(shipper.config), {"file": name, "since": iso(now_utc()), "message": message})
    raise OperationFailed(message)
