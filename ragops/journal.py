"""The one journal helper: append-only JSONL records and atomically replaced JSON files.

Every journal (deploy history, runbook audit, failover records, DNS changes) goes through here,
so all of them get the same guarantees:
- secrets are redacted (ragops.secrets) after the record is made plain JSON, before any byte is written;
- a record is one line written with a single write() on an O_APPEND descriptor, then fsynced,
  so concurrent writers never interleave inside a line and a crash loses at most a torn last line;
- files are created 0600 and opened with O_NOFOLLOW: a symlink planted at the journal's path in
  the state directory is refused, never followed;
- readers skip a torn (unparseable) line instead of failing.

The one unredacted writer, write_private_json, is for values a run needs back to resume (a runbook
run's secret outputs); it is never used for a journal and its files are never printed.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from ragops.errors import OperationFailed
from ragops.secrets import redact_data


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths and datetimes as values json.dumps takes (not redacted)."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def jsonable(data: Any) -> Any:
    """Dataclasses, paths and datetimes as plain JSON values (not redacted)."""
    return json.loads(json.dumps(to_jsonable(data), default=str))


def plain(data: Any) -> Any:
    """Dataclasses, paths and datetimes as plain JSON values, then redacted."""
    return redact_data(jsonable(data))


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OperationFailed(f"{path} is a symlink; refusing to use it as a journal",
                                  hint="remove the link; ragops journals are plain files in the state directory") \
                from None
        raise


def append(path: Path, record: Any) -> None:
    """Append one redacted record as one JSON line (single write, fsync)."""
    path = Path(path)
    line = (json.dumps(plain(record)) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        written = os.write(fd, line)
        while written < len(line):           # short writes are rare on regular files; finish the line
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, limit: int | None = None) -> list[dict]:
    """The records in order, the last `limit` of them; torn or foreign lines are skipped."""
    try:
        fd = _open(Path(path), os.O_RDONLY)
    except OSError:               # missing or unreadable: no records (a symlink still raises)
        return []
    with os.fdopen(fd, "rb") as handle:
        lines = handle.read().decode(errors="replace").splitlines()
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue      # a torn last line after a crash; the rest is intact
        if isinstance(record, dict):
            records.append(record)
    return records[-limit:] if limit else records


def write_json(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """Replace `path` atomically with redacted JSON: temp file beside it, fsync, os.replace."""
    path = Path(path)
    text = json.dumps(plain(data), indent=indent) + "\n"
    _replace(path, text.encode())


def write_private_json(path: Path, data: Any) -> None:
    """Replace `path` atomically with UNREDACTED JSON, 0600, with the same O_EXCL temp file and
    O_NOFOLLOW guarantees as write_json. Only for secrets a later command must read back."""
    _replace(Path(path), (json.dumps(jsonable(data)) + "\n").encode())


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        fd = _open(Path(path), os.O_RDONLY)
    except OSError:               # missing or unreadable (a symlink still raises)
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            return json.loads(handle.read())
        except ValueError:
            return None


def keep_last(path: Path, count: int) -> None:
    """Rewrite a JSONL journal atomically with only its last `count` records."""
    records = read(path, limit=count)
    _replace(Path(path), "".join(json.dumps(r) + "\n" for r in records).encode())


def _replace(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)      # rename replaces a planted symlink itself, never its target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
