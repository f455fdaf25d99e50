"""Encryption at rest with age (https://age-encryption.org, X25519 recipients) via pyrage.

pyrage's `encrypt_io`/`decrypt_io` stream between file-like objects (age's STREAM construction,
64 KiB chunks): checked here at 1 GB with a 16 MB peak RSS, so no temporary file and no buffering
of the whole database. The key is an age identity (AGE-SECRET-KEY-1...) from
`backups.encryption_key`; on the local platform with it unset, one is generated into
<state_dir>/secrets/backup-age-key (mode 0600). Only a short hash of the recipient (the public
key), the key id, is ever written down.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

from ragops.errors import ConfigError, OperationFailed
from ragops.platforms import platform_class
from ragops.secrets import register_secret

KEY_FILE = "backup-age-key"
HEADER_PROBE = 128 * 1024        # enough for the age header and the first 64 KiB payload chunk


@dataclass
class Key:
    identity: object             # pyrage.x25519.Identity (never printed)
    recipient: object            # pyrage.x25519.Recipient
    key_id: str


def key_id_of(recipient) -> str:
    return "age-" + hashlib.sha256(str(recipient).encode()).hexdigest()[:16]


def _parse(text: str, where: str) -> Key:
    from pyrage import x25519

    register_secret(text)
    try:
        identity = x25519.Identity.from_str(text.strip())
    except Exception:  # noqa: BLE001 - never echo the value
        raise ConfigError(f"{where}: not an age identity (expected AGE-SECRET-KEY-1...)") from None
    recipient = identity.to_public()
    return Key(identity, recipient, key_id_of(recipient))


def load_key(config, *, generate: bool = True) -> Key:
    """The backup key: backups.encryption_key, else (local platform) a generated state secret."""
    ref = config.backups.encryption_key
    if ref:
        return _parse(config.reveal(ref, "backups.encryption_key"),
                      f"environments.{config.env_name}.backups.encryption_key")
    platform = platform_class(config)
    if not platform.generates_local_secrets:
        raise ConfigError(f"environments.{config.env_name}.backups.encryption_key: required for the "
                          f"{platform.name} platform (a secret reference to an age identity)")
    path = config.state_dir / "secrets" / KEY_FILE
    if not path.exists():
        if not generate:
            raise ConfigError(f"no backup key at {path} and backups.encryption_key is not set")
        from pyrage import x25519

        from ragops.private_fs import private_dirs

        private_dirs(path.parent)
        os.chmod(path.parent, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process generated it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(str(x25519.Identity.generate()) + "\n")
    return _parse(path.read_text().strip(), str(path))


def encrypt_stream(reader, writer, key: Key) -> None:
    """Encrypt everything `reader.read()` yields into `writer.write()`, streaming."""
    import pyrage

    try:
        pyrage.encrypt_io(reader, writer, [key.recipient])
    except (pyrage.EncryptError, OSError) as exc:
        raise OperationFailed(f"encryption failed: {exc}") from exc


def decrypt_stream(reader, writer, key: Key, what: str) -> None:
    import pyrage

    try:
        pyrage.decrypt_io(reader, writer, [key.identity])
    except pyrage.DecryptError as exc:
        raise OperationFailed(_decrypt_message(str(exc), what, key)) from None
    except OSError as exc:
        raise OperationFailed(f"{what}: decryption failed ({exc}): the object is damaged or truncated") from None


def _decrypt_message(text: str, what: str, key: Key) -> str:
    if "No matching keys" in text:
        return f"{what}: wrong key: the configured key {key.key_id} cannot decrypt it"
    return f"{what}: not a valid age file ({text})"


class _Capture:
    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def check_key(head: bytes, key: Key, what: str, whole: bool) -> None:
    """Decrypt the header and first chunk (`head`, the object's first bytes): raises on a wrong key
    or a damaged start. `whole` says `head` is the entire object."""
    import pyrage

    out = _Capture()
    try:
        pyrage.decrypt_io(io.BytesIO(head), out, [key.identity])
    except pyrage.DecryptError as exc:
        raise OperationFailed(_decrypt_message(str(exc), what, key)) from None
    except OSError:
        # a truncated stream fails after the first chunk was authenticated and written
        if whole or out.size == 0:
            raise OperationFailed(f"{what}: the first encrypted block does not authenticate: "
                                  f"the object is damaged") from None
