"""Crypter stages, by name. The manifest records the name (`encryption.format`) and the key id
(never the key); verify/restore pick the stage from it. The key itself comes from
ragops.db.crypto (backups.encryption_key, or a generated local state secret).
"""
from __future__ import annotations

from typing import Protocol

from ragops.errors import OperationFailed

DEFAULT = "age"                      # what a manifest without the field was written with


class Crypter(Protocol):
    name: str
    key_id: str
    header_probe: int                # bytes of the object's start that check_head needs

    def encrypt(self, reader, writer) -> None:
        """Pump: encrypt everything `reader.read()` yields into `writer.write()`."""

    def decrypt(self, reader, writer, what: str) -> None:
        """Pump the other way; a wrong key or damage raises OperationFailed naming `what`."""

    def check_head(self, head: bytes, what: str, whole: bool) -> None:
        """Decrypt the object's first bytes: raises on a wrong key or a damaged start."""

    def manifest_fields(self) -> dict:
        """What the manifest's `encryption` records (the name as `format`, the key id)."""


class Age:
    """age (X25519 recipients) through pyrage; the `age` CLI decrypts what this writes."""

    name = "age"

    def __init__(self, key):
        from ragops.db.crypto import HEADER_PROBE

        self.key = key
        self.key_id = key.key_id
        self.header_probe = HEADER_PROBE

    @classmethod
    def from_config(cls, config, generate: bool) -> Age:
        from ragops.db.crypto import load_key

        return cls(load_key(config, generate=generate))

    def encrypt(self, reader, writer) -> None:
        from ragops.db.crypto import encrypt_stream

        encrypt_stream(reader, writer, self.key)

    def decrypt(self, reader, writer, what: str) -> None:
        from ragops.db.crypto import decrypt_stream

        decrypt_stream(reader, writer, self.key, what)

    def check_head(self, head: bytes, what: str, whole: bool) -> None:
        from ragops.db.crypto import check_key

        check_key(head, self.key, what, whole=whole)

    def manifest_fields(self) -> dict:
        return {"format": self.name, "recipient_type": "X25519", "key_id": self.key_id}


CRYPTERS: dict[str, type] = {"age": Age}


def crypter_class(name: str | None, where: str = "backups"):
    """The crypter class called `name` (None: the default); an unknown name is an error naming it."""
    name = name or DEFAULT
    cls = CRYPTERS.get(name)
    if cls is None:
        raise OperationFailed(f"{where}: unknown crypter {name!r} (known: {', '.join(sorted(CRYPTERS))})")
    return cls


def get_crypter(config, name: str | None = None, *, generate: bool = False, where: str = "backups") -> Crypter:
    """The crypter called `name` with its key from the configuration."""
    return crypter_class(name, where).from_config(config, generate)
