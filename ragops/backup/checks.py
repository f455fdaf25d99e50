"""The read-only checks of a stored backup that verify and restore both run before anything
else: the hash check (size and sha256 against the manifest) and the key check (the crypter
decrypts the object's first block).
"""
from __future__ import annotations

from dataclasses import dataclass

from ragops.backup.catalog import Manifest
from ragops.backup.pipeline import Meter, Progress, digest_of
from ragops.errors import OperationFailed


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


def check_object(storage, manifest: Manifest, progress: Progress) -> Check:
    """The hash check: the stored object's size and sha256 against the manifest."""
    key = manifest.object_key
    where = storage.describe(key)
    meter = Meter(progress, f"checking digest of {where}:", manifest.stored_bytes)
    try:
        digest, size = digest_of(storage.read_chunks(key), meter)
    except OperationFailed as exc:
        return Check(f"digest {where}", False, exc.message)
    if size != manifest.stored_bytes:
        return Check(f"digest {where}", False,
                     f"{where}: size {size} differs from the manifest's {manifest.stored_bytes}")
    if digest != manifest.sha256:
        return Check(f"digest {where}", False,
                     f"{where}: SHA-256 mismatch (stored object {digest[:12]}..., manifest {manifest.sha256[:12]}...)")
    return Check(f"digest {where}", True, f"sha256 {digest[:12]}... {size} bytes")


def check_key(storage, manifest: Manifest, crypter) -> Check:
    """The configured key against the manifest's key id and the object's first block."""
    where = storage.describe(manifest.object_key)
    wanted = manifest.encryption.get("key_id")
    if wanted and wanted != crypter.key_id:
        return Check("key", False, f"{where}: wrong key: encrypted for key {wanted}, the configured key is {crypter.key_id}")
    head = b"".join(storage.read_chunks(manifest.object_key, limit=crypter.header_probe))
    try:
        crypter.check_head(head, where, whole=len(head) >= manifest.stored_bytes)
    except OperationFailed as exc:
        return Check("key", False, exc.message)
    return Check("key", True, f"key {crypter.key_id} decrypts the first block")
