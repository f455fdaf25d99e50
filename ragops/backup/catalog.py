"""The backup catalog: ids, manifests, listing, resolving `latest`, in-progress locks.

Storage layout, one folder per backup id (ids sort by time):

    <id>/backup.dump.zst.age   the encrypted, compressed dump
    <id>/lock.json             written first, removed last: "in progress" (host, pid)
    <id>/verification.json     the latest verify result (and a short history)
    <id>/manifest.json         written LAST: the commit point. No manifest, no backup.

The manifest names the stages the object went through (`compression.algorithm`,
`encryption.format`); one written before those were recorded means zstd + age.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from ragops.backup.compressors import DEFAULT as DEFAULT_COMPRESSOR
from ragops.backup.compressors import get_compressor
from ragops.backup.crypters import DEFAULT as DEFAULT_CRYPTER
from ragops.backup.crypters import get_crypter
from ragops.errors import OperationFailed, UsageError

DATA = "backup.dump.zst.age"
MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
LOCK = "lock.json"
# time (UTC, ms) and, since two hosts or processes can start a backup in the same millisecond, a
# random suffix; ids written before the suffix existed stay valid
ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z(-[0-9a-f]{6})?$")
FORMAT_VERSION = 1
STALE_LOCK = timedelta(hours=24)     # a lock from another host older than this is abandoned


# ---- ids and time ---------------------------------------------------------------------------

_last_id: list[str] = [""]
_id_lock = threading.Lock()


def new_backup_id(now: datetime | None = None, suffix: bool = True) -> str:
    """A sortable, time-based id: 20250131T235959.123Z-3fa9c1 (UTC, milliseconds, 24 random bits).
    Two ids asked for in the same millisecond by one process still differ in time (the second moves
    on a millisecond); other processes differ by the suffix, and the storage refuses a taken id
    (commit_backup creates the lock and the manifest only if absent)."""
    def fmt(moment: datetime) -> str:
        return moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z"

    with _id_lock:
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        candidate = fmt(moment)
        last = _last_id[0]
        if last and candidate <= last and id_time(last) - moment < timedelta(seconds=1):
            candidate = fmt(id_time(last) + timedelta(milliseconds=1))
        _last_id[0] = candidate
        return f"{candidate}-{secrets.token_hex(3)}" if suffix else candidate


def id_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id.partition("Z")[0], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- manifests ------------------------------------------------------------------------------

@dataclass
class Manifest:
    id: str
    project: str
    environment: str
    database: str
    server_version: str
    started_at: str
    finished_at: str
    duration_seconds: float
    wal_lsn: str
    wal_file: str | None
    raw_bytes: int                   # what the reader yielded (pg_dump custom format, uncompressed)
    stored_bytes: int                # the object in storage
    sha256: str                      # of the stored object
    compression: dict                # {"algorithm": "zstd", "level": 3}: the compressor stage
    encryption: dict                 # {"format": "age", "key_id": "age-..."}: the crypter stage, never the key
    row_counts: dict                 # table -> rows, in the dump's snapshot
    ragops_version: str
    label: str | None = None
    object: str = DATA
    dump_format: str = "pg_dump custom (-Fc -Z0)"
    copies: list = field(default_factory=list)   # second storages holding the same object
    format_version: int = FORMAT_VERSION
    kind: str = "logical"            # "logical" (pg_dump) | "physical" (pg_basebackup, ragops/pitr)
    physical: dict | None = None     # physical only: start/stop LSN and time, timeline, first WAL segment

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        missing = [name for name in ("id", "sha256", "stored_bytes", "encryption") if name not in data]
        if missing:
            raise OperationFailed(f"manifest {data.get('id', '?')}: missing {', '.join(missing)}")
        data = {"compression": {}, **data}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def compressor_name(self) -> str:
        return (self.compression or {}).get("algorithm") or DEFAULT_COMPRESSOR

    @property
    def crypter_name(self) -> str:
        return (self.encryption or {}).get("format") or DEFAULT_CRYPTER

    @property
    def object_key(self) -> str:
        return f"{self.id}/{self.object}"


def manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def stages_of(config, manifest: Manifest):
    """The compressor and crypter a stored object went through, by the manifest's names."""
    where = f"manifest {manifest.id}"
    compressor = get_compressor(manifest.compressor_name, (manifest.compression or {}).get("level"), where)
    return compressor, get_crypter(config, manifest.crypter_name, generate=False, where=where)


@dataclass
class BackupSummary:
    id: str
    started_at: str
    finished_at: str
    age_seconds: float
    stored_bytes: int
    raw_bytes: int
    label: str | None
    database: str
    verified: bool | None            # None: never verified
    verified_at: str | None
    restore_tested: bool
    kind: str = "logical"


@dataclass
class CreatePlan:
    """What a --dry-run would do (create and restore)."""
    dry_run: bool
    steps: list[str]


# ---- storage --------------------------------------------------------------------------------

def storages(config):
    """The configured storage and the copy storage (None without backups.copy_to)."""
    from ragops.backup.storage import open_storage

    primary = open_storage(config)
    copy = open_storage(config, config.backups.copy_to, "backups.copy_to") if config.backups.copy_to else None
    return primary, copy


def read_json(storage, key: str) -> dict:
    try:
        return json.loads(storage.get_bytes(key))
    except json.JSONDecodeError:
        raise OperationFailed(f"{storage.describe(key)}: not valid JSON") from None


def safe_json(storage, key: str) -> dict | None:
    try:
        return read_json(storage, key)
    except OperationFailed:
        return None


def scan(storage) -> dict[str, set[str]]:
    """id -> names of the objects in its folder (pending uploads are not objects)."""
    ids: dict[str, set[str]] = {}
    for obj in storage.list():
        head, _, name = obj.key.partition("/")
        ids.setdefault(head, set()).add(name)
    return ids


def manifests(storage) -> list[tuple[Manifest, dict | None]]:
    """(manifest, verification record or None) of every backup, oldest first."""
    found = []
    for backup_id, names in sorted(scan(storage).items()):
        if MANIFEST not in names or not ID_RE.match(backup_id):
            continue
        manifest = Manifest.from_dict(read_json(storage, f"{backup_id}/{MANIFEST}"))
        verification = read_json(storage, f"{backup_id}/{VERIFICATION}") if VERIFICATION in names else None
        found.append((manifest, verification))
    return found


def resolve(storage, backup_id: str, kind: str | None = None) -> Manifest:
    """The manifest of `backup_id` ('latest': the newest, of `kind` when given)."""
    if backup_id == "latest":
        entries = [e for e in manifests(storage) if kind is None or e[0].kind == kind]
        if not entries:
            raise OperationFailed(f"no {kind + ' ' if kind else ''}backups in {storage.url}")
        return entries[-1][0]
    if not ID_RE.match(backup_id):
        raise UsageError(f"backup id {backup_id!r}: expected 'latest' or an id like 20250131T235959.123Z-3fa9c1")
    if not storage.exists(f"{backup_id}/{MANIFEST}"):
        raise OperationFailed(f"no backup {backup_id} in {storage.url} (a backup without a manifest does not exist)")
    return Manifest.from_dict(read_json(storage, f"{backup_id}/{MANIFEST}"))


# ---- in-progress locks ----------------------------------------------------------------------

def write_lock(storage, backup_id: str, started: datetime) -> bool:
    """Claim `backup_id`: False when its lock already exists (another backup took that id)."""
    return storage.put_bytes_if_absent(f"{backup_id}/{LOCK}", json.dumps(
        {"id": backup_id, "host": socket.gethostname(), "pid": os.getpid(), "started_at": iso(started)}).encode())


def drop_lock(storage, backup_id: str) -> None:
    try:
        storage.delete(f"{backup_id}/{LOCK}")
    except OperationFailed:
        pass  # prune treats a dead lock as an orphan


def lock_alive(lock: dict | None, now: datetime) -> bool:
    if not lock:
        return False
    if lock.get("host") == socket.gethostname():
        try:
            os.kill(int(lock.get("pid", 0)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
        return True
    try:
        return now - parse_iso(lock["started_at"]) < STALE_LOCK
    except (KeyError, ValueError):
        return False


# ---- list / show ----------------------------------------------------------------------------

def _summary(manifest: Manifest, verification: dict | None, now: datetime) -> BackupSummary:
    return BackupSummary(
        id=manifest.id, started_at=manifest.started_at, finished_at=manifest.finished_at,
        age_seconds=round((now - parse_iso(manifest.finished_at)).total_seconds(), 1),
        stored_bytes=manifest.stored_bytes, raw_bytes=manifest.raw_bytes, label=manifest.label,
        database=manifest.database,
        verified=None if verification is None else bool(verification.get("ok")),
        verified_at=None if verification is None else verification.get("checked_at"),
        restore_tested=bool(verification and verification.get("ok") and verification.get("restore")),
        kind="incremental" if (manifest.physical or {}).get("incremental") else manifest.kind)


def list_backups(config) -> list[BackupSummary]:
    """Backups with a manifest, oldest first."""
    storage, _copy = storages(config)
    now = now_utc()
    return [_summary(m, v, now) for m, v in manifests(storage)]


def show_backup(config, backup_id: str, kind: str | None = None) -> dict:
    storage, _copy = storages(config)
    manifest = resolve(storage, backup_id, kind)
    key = f"{manifest.id}/{VERIFICATION}"
    verification = read_json(storage, key) if storage.exists(key) else None
    return {"manifest": manifest.to_dict(), "verification": verification,
            "object": storage.describe(manifest.object_key)}
