"""The local platform's lock: one JSON file, safe against concurrent takers on this machine.

Created whole under a unique temporary name and linked into place (link refuses an existing name),
so a reader never sees an empty or half-written lock (O_EXCL then write let a concurrent reader
find an empty file, call it unreadable and expired, and take the lock over). replace/delete compare
the owner's token under an flock on a guard file, so two takers of one stale lock cannot both win.
"""
from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragops.fsutil import write_atomic
from ragops.platforms.base import TokenFileLock


class FileLock(TokenFileLock):
    """The operations (deploy) lock as a file; replace/delete compare the owner token."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"token": "?", "owner": "unreadable lock file", "expires_at": 0}

    def create(self, record: dict) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
            try:
                os.link(temp, self.path)
            except FileExistsError:
                return False
            return True
        finally:
            temp.unlink(missing_ok=True)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def replace(self, expected_token: str, record: dict) -> bool:
        with self._guard():
            return super().replace(expected_token, record)

    def delete(self, expected_token: str | None = None) -> bool:
        if not self.path.parent.is_dir():
            return False      # the state directory is gone (down --purge): nothing to delete
        with self._guard():
            return super().delete(expected_token)

    def _write(self, record: dict) -> None:
        write_atomic(self.path, json.dumps(record), mode=0o600)

    def _remove(self) -> None:
        self.path.unlink(missing_ok=True)
