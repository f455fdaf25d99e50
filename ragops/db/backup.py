"""Logical backups of the environment's primary: create, list, verify, restore, prune, check.

    pg_dump -Fc -Z0 --snapshot=S  ->  zstd  ->  age  ->  sha256  ->  storage (file:// or s3://)

Everything streams: no temporary file the size of the database, and memory stays flat (the
largest buffer is one S3 part). The row counts in the manifest come from the same exported
snapshot pg_dump reads, so they match the dump exactly.

Storage layout, one folder per backup id (ids sort by time):

    <id>/backup.dump.zst.age   the encrypted, compressed dump
    <id>/lock.json             written first, removed last: "in progress" (host, pid)
    <id>/verification.json     the latest verify result (and a short history)
    <id>/manifest.json         written LAST: the commit point. No manifest, no backup.

The engine knows nothing about typer or rich: it reports progress through a callback taking
one human-readable line, returns dataclasses, and raises ragops errors.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets as pysecrets
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator

from ragops.errors import GateFailed, OperationFailed, UsageError

Progress = Callable[[str], None] | None

DATA = "backup.dump.zst.age"
MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
LOCK = "lock.json"
ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z$")
FORMAT_VERSION = 1
STALE_LOCK = timedelta(hours=24)     # a lock from another host older than this is abandoned
PIPE_SIZE = 1024 * 1024


# ---- ids and time ---------------------------------------------------------------------------

_last_id: list[str] = [""]
_id_lock = threading.Lock()


def new_backup_id(now: datetime | None = None) -> str:
    """A sortable, time-based id: 20250131T235959.123Z (UTC, milliseconds). Two ids asked for in
    the same millisecond by one process still differ (the second moves on a millisecond)."""
    def fmt(moment: datetime) -> str:
        return moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z"

    with _id_lock:
        moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        candidate = fmt(moment)
        last = _last_id[0]
        if last and candidate <= last and id_time(last) - moment < timedelta(seconds=1):
            candidate = fmt(id_time(last) + timedelta(milliseconds=1))
        _last_id[0] = candidate
        return candidate


def id_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id[:-1], "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ---- results --------------------------------------------------------------------------------

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
    raw_bytes: int                   # pg_dump output (custom format, uncompressed)
    stored_bytes: int                # the object in storage
    sha256: str                      # of the stored object
    compression: dict                # {"algorithm": "zstd", "level": 3}
    encryption: dict                 # {"format": "age", "key_id": "age-..."}  never the key
    row_counts: dict                 # table -> rows, in the dump's snapshot
    ragops_version: str
    label: str | None = None
    object: str = DATA
    dump_format: str = "pg_dump custom (-Fc -Z0)"
    copies: list = field(default_factory=list)   # second storages holding the same object
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        missing = [name for name in ("id", "sha256", "stored_bytes", "encryption") if name not in data]
        if missing:
            raise OperationFailed(f"manifest {data.get('id', '?')}: missing {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyResult:
    backup_id: str
    ok: bool
    restore: bool
    checked_at: str
    duration_seconds: float
    checks: list[Check]

    @property
    def failure(self) -> str:
        return "; ".join(c.detail or c.name for c in self.checks if not c.ok)


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


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    stored_bytes: int
    raw_bytes: int
    elapsed_seconds: float
    rate_bytes_per_second: float


@dataclass
class PruneAction:
    kind: str                        # "backup" | "orphan" | "pending-upload"
    target: str                      # backup id, or storage object
    storage: str
    reason: str


@dataclass
class PrunePlan:
    applied: bool
    keep: dict                       # id -> reasons
    delete: list[PruneAction]
    skipped: list[str]               # in-progress backups left alone


@dataclass
class CheckResult:
    ok: bool
    newest_id: str | None
    newest_finished_at: str | None
    age_seconds: float | None
    max_age_seconds: float
    stored_bytes: int | None
    duration_seconds: float | None
    backups: int
    metrics_file: str | None


@dataclass
class LifecyclePlan:
    applied: bool
    storages: list[dict]             # {"storage", "add", "change", "unchanged", "keep_foreign"}


@dataclass
class CreatePlan:
    dry_run: bool
    steps: list[str]


# ---- progress -------------------------------------------------------------------------------

class Meter:
    """Bytes, rate, ETA and elapsed time, reported at most once a second."""

    def __init__(self, progress: Progress, verb: str, total: int | None = None, interval: float = 1.0):
        self.progress = progress
        self.verb = verb
        self.total = total
        self.interval = interval
        self.count = 0
        self.start = time.monotonic()
        self.last = self.start

    def add(self, n: int) -> None:
        self.count += n
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.progress(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.count / elapsed
        text = f"{self.verb} {_size(self.count)}"
        if self.total:
            pct = min(100.0, 100.0 * self.count / self.total)
            eta = (self.total - self.count) / rate if rate > 0 else 0
            text += f" of {_size(self.total)} ({pct:.0f}%), {_size(rate)}/s, ETA {max(eta, 0):.0f}s"
        else:
            text += f", {_size(rate)}/s"
        return text + f", elapsed {elapsed:.0f}s"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


# ---- stream adapters ------------------------------------------------------------------------

class CountingReader:
    """A read() wrapper counting what passes (the raw pg_dump bytes)."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n


class ChunkReader:
    """read(n) over an iterator of chunks (a storage object streaming in), with a meter."""

    def __init__(self, chunks: Iterable[bytes], meter: Meter | None = None):
        self.chunks = iter(chunks)
        self.meter = meter
        self.buffer = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self.buffer:          # an empty chunk is not the end of the stream
            try:
                chunk = next(self.chunks)
            except StopIteration:
                return b""
            if self.meter:
                self.meter.add(len(chunk))
            self.buffer = memoryview(chunk)
        if size is None or size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        self.buffer = self.buffer[size:]
        return out


class DigestWriter:
    """write(): sha256 + byte count + meter, then on to the storage writer."""

    def __init__(self, out, meter: Meter | None = None):
        self.out = out
        self.meter = meter
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.count += len(data)
        self.out.write(data)
        if self.meter:
            self.meter.add(len(data))
        return len(data)

    def flush(self) -> None:
        pass


class ReturnLen:
    """Adapts a writer so write() returns the bytes consumed (what pyrage expects)."""

    def __init__(self, out):
        self.out = out

    def write(self, data) -> int:
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


# ---- database connections ---------------------------------------------------------------------

def _source_params(config) -> dict:
    """libpq parameters for the environment's database on its primary (superuser)."""
    from psycopg.conninfo import conninfo_to_dict

    if config.database.dsn:
        params = conninfo_to_dict(config.reveal(config.database.dsn, "database.dsn"))
    else:
        from ragops.db.connect import node_dsn

        params = conninfo_to_dict(node_dsn(config, dbname=config.database.name))
    return params


def _params_from_dsn(dsn: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    from ragops.secrets import register_secret

    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - the message could echo the password
        raise UsageError("--target: not a valid PostgreSQL connection string") from None
    register_secret(params.get("password"))
    return params


def _tool_call(params: dict) -> tuple[str, dict]:
    """A conninfo without the password (it goes into PGPASSWORD, not onto a command line)."""
    from psycopg.conninfo import make_conninfo

    rest = {k: v for k, v in params.items() if k != "password" and v is not None}
    env = {**os.environ, "PGCONNECT_TIMEOUT": str(params.get("connect_timeout") or 10)}
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    return make_conninfo(**rest), env


def _describe(params: dict) -> str:
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _connect(params: dict, autocommit: bool = True):
    import psycopg

    try:
        return psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=autocommit)
    except psycopg.Error as exc:
        from ragops.secrets import redact

        raise OperationFailed(f"cannot connect to {_describe(params)}: {redact(str(exc).strip().splitlines()[0])}") from None


def _row_counts(cur, tables: list[str]) -> dict:
    from psycopg import sql

    counts = {}
    for table in tables:
        cur.execute("SELECT to_regclass(%s)::text", (table,))
        regclass = cur.fetchone()[0]
        if regclass is None:
            continue  # counted only where the table exists
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(regclass)))
        counts[table] = cur.fetchone()[0]
    return counts


def _pg_tool(config, name: str) -> str:
    from ragops.db.pgctl import tool

    return tool(name, config.database.bin_dir)


def _grow_pipe(pipe) -> None:
    """A 1 MiB pipe (Linux) instead of 64 KiB lets pg_dump/pg_restore run ahead of Python."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ImportError):
        pass


def _stderr_tail(handle) -> str:
    """The first error line and the last line of a tool's stderr, redacted."""
    from ragops.secrets import redact

    handle.seek(0)
    lines = [ln for ln in handle.read().decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    first = next((ln for ln in lines if "error" in ln.lower()), lines[-1])
    return redact(first if first == lines[-1] else f"{first} ... {lines[-1]}")


# ---- storage helpers --------------------------------------------------------------------------

def _storages(config):
    from ragops.db.storage import open_storage

    primary = open_storage(config)
    copy = open_storage(config, config.backups.copy_to, "backups.copy_to") if config.backups.copy_to else None
    return primary, copy


def _read_json(storage, key: str) -> dict:
    try:
        return json.loads(storage.get_bytes(key))
    except json.JSONDecodeError:
        raise OperationFailed(f"{storage.describe(key)}: not valid JSON") from None


def _scan(storage) -> dict[str, set[str]]:
    """id -> names of the objects in its folder (pending uploads are not objects)."""
    ids: dict[str, set[str]] = {}
    for obj in storage.list():
        head, _, name = obj.key.partition("/")
        ids.setdefault(head, set()).add(name)
    return ids


def _manifests(storage) -> list[tuple[Manifest, dict | None]]:
    found = []
    for backup_id, names in sorted(_scan(storage).items()):
        if MANIFEST not in names or not ID_RE.match(backup_id):
            continue
        manifest = Manifest.from_dict(_read_json(storage, f"{backup_id}/{MANIFEST}"))
        verification = _read_json(storage, f"{backup_id}/{VERIFICATION}") if VERIFICATION in names else None
        found.append((manifest, verification))
    return found


def _resolve(storage, backup_id: str) -> Manifest:
    if backup_id == "latest":
        entries = _manifests(storage)
        if not entries:
            raise OperationFailed(f"no backups in {storage.url}")
        return entries[-1][0]
    if not ID_RE.match(backup_id):
        raise UsageError(f"backup id {backup_id!r}: expected 'latest' or an id like 20250131T235959.123Z")
    if not storage.exists(f"{backup_id}/{MANIFEST}"):
        raise OperationFailed(f"no backup {backup_id} in {storage.url} (a backup without a manifest does not exist)")
    return Manifest.from_dict(_read_json(storage, f"{backup_id}/{MANIFEST}"))


def _lock_alive(lock: dict | None, now: datetime) -> bool:
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
        return now - _parse_iso(lock["started_at"]) < STALE_LOCK
    except (KeyError, ValueError):
        return False


def _digest_of(storage, key: str, meter: Meter | None = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in storage.read_chunks(key):
        digest.update(chunk)
        size += len(chunk)
        if meter:
            meter.add(len(chunk))
    return digest.hexdigest(), size


def _check_object(storage, manifest: Manifest, progress: Progress) -> Check:
    key = f"{manifest.id}/{manifest.object}"
    where = storage.describe(key)
    meter = Meter(progress, f"checking digest of {where}:", manifest.stored_bytes)
    try:
        digest, size = _digest_of(storage, key, meter)
    except OperationFailed as exc:
        return Check(f"digest {where}", False, exc.message)
    if size != manifest.stored_bytes:
        return Check(f"digest {where}", False,
                     f"{where}: size {size} differs from the manifest's {manifest.stored_bytes}")
    if digest != manifest.sha256:
        return Check(f"digest {where}", False,
                     f"{where}: SHA-256 mismatch (stored object {digest[:12]}..., manifest {manifest.sha256[:12]}...)")
    return Check(f"digest {where}", True, f"sha256 {digest[:12]}... {size} bytes")


def _check_key(storage, manifest: Manifest, key) -> Check:
    from ragops.db.crypto import HEADER_PROBE, check_key

    where = storage.describe(f"{manifest.id}/{manifest.object}")
    wanted = manifest.encryption.get("key_id")
    if wanted and wanted != key.key_id:
        return Check("key", False, f"{where}: wrong key: encrypted for key {wanted}, the configured key is {key.key_id}")
    head = b"".join(storage.read_chunks(f"{manifest.id}/{manifest.object}", limit=HEADER_PROBE))
    try:
        check_key(head, key, where, whole=len(head) >= manifest.stored_bytes)
    except OperationFailed as exc:
        return Check("key", False, exc.message)
    return Check("key", True, f"key {key.key_id} decrypts the first block")


# ---- create -----------------------------------------------------------------------------------

def create_backup(config, label: str | None = None, progress: Progress = None,
                  dry_run: bool = False) -> Manifest | CreatePlan:
    """Dump the primary, compress, encrypt, digest and store; the manifest is written last."""
    from ragops.db.crypto import load_key

    if label is not None and not re.fullmatch(r"[\w.:@+-]{1,100}", label):
        raise UsageError(f"--label: use letters, digits and ._:@+- (at most 100), got {label!r}")
    backups = config.backups
    key = load_key(config, generate=not dry_run) if not dry_run or backups.encryption_key else None
    storage, copy = _storages(config)
    params = _source_params(config)
    if dry_run:
        steps = [f"export a snapshot on {_describe(params)} and count rows of {', '.join(backups.tables) or '(none)'}",
                 f"pg_dump -Fc -Z0 --snapshot  ->  zstd level {backups.compression_level}  ->  age "
                 f"(key {key.key_id if key else 'generated on first use'})  ->  sha256",
                 f"stream into {storage.describe('<id>/' + DATA)}"]
        if copy:
            steps.append(f"copy to {copy.describe('<id>/' + DATA)} and check its digest")
        steps.append(f"write {storage.describe('<id>/' + MANIFEST)} last (the commit point)")
        return CreatePlan(True, steps)

    backup_id = new_backup_id()
    started = _now()
    storage.put_bytes(f"{backup_id}/{LOCK}", json.dumps(
        {"id": backup_id, "host": socket.gethostname(), "pid": os.getpid(), "started_at": _iso(started)}).encode())
    try:
        _say(progress, f"{backup_id}: dumping {_describe(params)} into {storage.url}")
        manifest = _dump(config, storage, backup_id, started, params, key, label, progress)
        if copy:
            _say(progress, f"{backup_id}: copying to {copy.url}")
            _copy_backup(storage, copy, manifest, progress)
            manifest.copies.append(copy.url)
            copy.put_bytes(f"{backup_id}/{MANIFEST}", _manifest_bytes(manifest))
        storage.put_bytes(f"{backup_id}/{MANIFEST}", _manifest_bytes(manifest))   # the commit point
    finally:
        _drop_lock(storage, backup_id)   # anything left without a manifest is an orphan for prune
    _say(progress, f"{backup_id}: done, {_size(manifest.raw_bytes)} dumped, {_size(manifest.stored_bytes)} "
                   f"stored in {manifest.duration_seconds:.1f}s")
    return manifest


def _dump(config, storage, backup_id: str, started: datetime, params: dict, key, label, progress) -> Manifest:
    import zstandard

    from ragops import __version__
    from ragops.db.crypto import encrypt_stream

    backups = config.backups
    conn = _connect(params, autocommit=False)
    try:
        with conn.cursor() as cur:
            # pg_dump reads the snapshot exported here, so the row counts match the dump exactly
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot(), current_setting('server_version'), pg_is_in_recovery()")
            snapshot, server_version, in_recovery = cur.fetchone()
            if in_recovery:
                cur.execute("SELECT pg_last_wal_replay_lsn()::text, NULL")
            else:
                cur.execute("SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())")
            wal_lsn, wal_file = cur.fetchone()
            counts = _row_counts(cur, backups.tables)
        conninfo, env = _tool_call(params)
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen([_pg_tool(config, "pg_dump"), "-Fc", "-Z0", f"--snapshot={snapshot}",
                                     "--no-password", "-d", conninfo], stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, bufsize=PIPE_SIZE)
            _grow_pipe(proc.stdout)
            try:
                raw = CountingReader(proc.stdout)
                compressed = zstandard.ZstdCompressor(level=backups.compression_level).stream_reader(
                    raw, read_size=PIPE_SIZE)
                with storage.writer(f"{backup_id}/{DATA}") as out:
                    sink = DigestWriter(out, Meter(progress, "stored"))
                    encrypt_stream(compressed, sink, key)
                    code = proc.wait()
                    if code != 0:   # raising here aborts the upload
                        raise OperationFailed(f"pg_dump failed: {_stderr_tail(stderr) or 'exit ' + str(code)}")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        conn.close()
    finished = _now()
    return Manifest(
        id=backup_id, project=config.project, environment=config.env_name, database=params.get("dbname", ""),
        server_version=server_version, started_at=_iso(started), finished_at=_iso(finished),
        duration_seconds=round((finished - started).total_seconds(), 3), wal_lsn=wal_lsn, wal_file=wal_file,
        raw_bytes=raw.count, stored_bytes=sink.count, sha256=sink.digest.hexdigest(),
        compression={"algorithm": "zstd", "level": backups.compression_level},
        encryption={"format": "age", "recipient_type": "X25519", "key_id": key.key_id},
        row_counts=counts, ragops_version=__version__, label=label)


def _manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def _drop_lock(storage, backup_id: str) -> None:
    try:
        storage.delete(f"{backup_id}/{LOCK}")
    except OperationFailed:
        pass  # prune treats a dead lock as an orphan


def _copy_backup(source, dest, manifest: Manifest, progress: Progress) -> None:
    from ragops.db.storage import put_stream

    key = f"{manifest.id}/{manifest.object}"
    meter = Meter(progress, "copied", manifest.stored_bytes)

    def chunks() -> Iterator[bytes]:
        for chunk in source.read_chunks(key):
            meter.add(len(chunk))
            yield chunk

    size, digest = put_stream(dest, key, chunks())
    if digest != manifest.sha256 or size != manifest.stored_bytes:
        dest.delete(key)
        raise OperationFailed(f"copy to {dest.describe(key)}: digest mismatch after copying")


# ---- list / show ----------------------------------------------------------------------------

def _summary(manifest: Manifest, verification: dict | None, now: datetime) -> BackupSummary:
    return BackupSummary(
        id=manifest.id, started_at=manifest.started_at, finished_at=manifest.finished_at,
        age_seconds=round((now - _parse_iso(manifest.finished_at)).total_seconds(), 1),
        stored_bytes=manifest.stored_bytes, raw_bytes=manifest.raw_bytes, label=manifest.label,
        database=manifest.database,
        verified=None if verification is None else bool(verification.get("ok")),
        verified_at=None if verification is None else verification.get("checked_at"),
        restore_tested=bool(verification and verification.get("ok") and verification.get("restore")))


def list_backups(config) -> list[BackupSummary]:
    """Backups with a manifest, oldest first."""
    storage, _copy = _storages(config)
    now = _now()
    return [_summary(m, v, now) for m, v in _manifests(storage)]


def show_backup(config, backup_id: str) -> dict:
    storage, _copy = _storages(config)
    manifest = _resolve(storage, backup_id)
    key = f"{manifest.id}/{VERIFICATION}"
    verification = _read_json(storage, key) if storage.exists(key) else None
    return {"manifest": manifest.to_dict(), "verification": verification,
            "object": storage.describe(f"{manifest.id}/{manifest.object}")}


# ---- verify ---------------------------------------------------------------------------------

def verify_backup(config, backup_id: str = "latest", restore: bool = False,
                  progress: Progress = None) -> VerifyResult:
    """Digest of every stored copy; with restore, a scratch restore and data checks. The result is
    recorded next to the manifest; `ok` says whether it passed."""
    from ragops.db.crypto import load_key

    storage, copy = _storages(config)
    manifest = _resolve(storage, backup_id)
    started = time.monotonic()
    checks = [_check_object(storage, manifest, progress)]
    if copy is not None:
        if copy.url in manifest.copies:
            checks.append(_check_object(copy, manifest, progress))
        else:
            checks.append(Check(f"copy {copy.url}", False, f"{manifest.id} was never copied to {copy.url}"))
    key = load_key(config, generate=False)
    if checks[0].ok:
        checks.append(_check_key(storage, manifest, key))
    if restore and all(c.ok for c in checks):
        checks.extend(_scratch_restore(config, storage, manifest, key, progress))
    result = VerifyResult(manifest.id, all(c.ok for c in checks), restore, _iso(_now()),
                          round(time.monotonic() - started, 3), checks)
    _record(storage, manifest, result)
    return result


def _record(storage, manifest: Manifest, result: VerifyResult) -> None:
    key = f"{manifest.id}/{VERIFICATION}"
    history = []
    if storage.exists(key):
        try:
            previous = _read_json(storage, key)
            history = previous.get("history", [])[-19:] + [{k: previous[k] for k in ("checked_at", "ok", "restore")
                                                            if k in previous}]
        except OperationFailed:
            history = []
    record = {**asdict(result), "history": history}
    storage.put_bytes(key, (json.dumps(record, indent=2) + "\n").encode())


def _scratch_restore(config, storage, manifest: Manifest, key, progress: Progress) -> list[Check]:
    from psycopg import sql

    params = _source_params(config)
    maintenance = {**params, "dbname": "postgres"}
    scratch = f"ragops_verify_{pysecrets.token_hex(4)}"
    checks: list[Check] = []
    admin = _connect(maintenance)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        _say(progress, f"restoring {manifest.id} into scratch database {scratch}")
        target = {**params, "dbname": scratch}
        try:
            _stream_restore(config, storage, manifest, key, target,
                            ["--no-owner", "--no-privileges", "--exit-on-error"], progress)
            checks.append(Check("restore", True, f"restored into scratch database {scratch}"))
        except OperationFailed as exc:
            return checks + [Check("restore", False, exc.message)]
        conn = _connect(target)
        try:
            with conn.cursor() as cur:
                counts = _row_counts(cur, list(manifest.row_counts))
                for table, expected in manifest.row_counts.items():
                    got = counts.get(table)
                    checks.append(Check(f"rows {table}", got == expected,
                                        f"{table}: {got} rows, manifest {expected}"))
                checks.append(_service_sanity(cur))
                cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'")
                if cur.fetchone():
                    cur.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
                    cur.execute("SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence <> 't'")
                    indexes = [r[0] for r in cur.fetchall()]
                    bad = []
                    for index in indexes:
                        try:
                            cur.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
                        except Exception as exc:  # noqa: BLE001 - reported as a failed check
                            bad.append(f"{index}: {str(exc).splitlines()[0]}")
                    checks.append(Check("amcheck", not bad, "; ".join(bad) or f"{len(indexes)} btree indexes ok"))
                else:
                    checks.append(Check("amcheck", True, "skipped: amcheck is not available on this server"))
        finally:
            conn.close()
    finally:
        try:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        finally:
            admin.close()
    return checks


def _service_sanity(cur) -> Check:
    """The bundled service's own invariant: every chunk belongs to an existing document."""
    cur.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'chunks' "
                "AND column_name = 'document_id' AND to_regclass('documents') IS NOT NULL")
    if not cur.fetchone():
        return Check("service sanity", True, "skipped: no documents/chunks tables")
    cur.execute("SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                "(SELECT 1 FROM documents d WHERE d.id = c.document_id)")
    orphans = cur.fetchone()[0]
    return Check("service sanity", orphans == 0, f"{orphans} chunks without their document")


# ---- restore --------------------------------------------------------------------------------

def _stream_restore(config, storage, manifest: Manifest, key, target: dict, extra: list[str],
                    progress: Progress) -> float:
    """Object -> age decrypt -> zstd decompress -> pg_restore's stdin. Returns elapsed seconds."""
    import zstandard

    from ragops.db.crypto import decrypt_stream

    conninfo, env = _tool_call(target)
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen([_pg_tool(config, "pg_restore"), "--no-password", *extra, "-d", conninfo],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                            bufsize=PIPE_SIZE)
    _grow_pipe(proc.stdin)
    where = storage.describe(f"{manifest.id}/{manifest.object}")
    meter = Meter(progress, "restored", manifest.stored_bytes)
    try:
        decompressor = zstandard.ZstdDecompressor().stream_writer(proc.stdin, write_size=PIPE_SIZE,
                                                                  closefd=False)
        try:
            decrypt_stream(ChunkReader(storage.read_chunks(f"{manifest.id}/{manifest.object}"), meter),
                           ReturnLen(decompressor), key, where)
            decompressor.flush()
            proc.stdin.close()
        except (OperationFailed, OSError, zstandard.ZstdError) as exc:
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            code = proc.wait()
            if code != 0:
                raise OperationFailed(f"pg_restore failed: {_stderr_tail(stderr) or 'exit ' + str(code)}") from None
            raise OperationFailed(getattr(exc, "message", f"{where}: {exc}")) from None
        code = proc.wait()
        if code != 0:
            raise OperationFailed(f"pg_restore failed: {_stderr_tail(stderr) or 'exit ' + str(code)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    _say(progress, meter.line())
    return meter.elapsed


def restore_backup(config, backup_id: str = "latest", target_dsn: str | None = None,
                   to_env: str | None = None, clean: bool = False, create: bool = False,
                   progress: Progress = None, dry_run: bool = False) -> RestoreResult | CreatePlan:
    """Restore into a target. Refuses a wrong key or a digest mismatch before touching it.
    With dry_run, runs those read-only checks and returns the plan without touching the target."""
    from ragops.db.crypto import load_key

    if bool(target_dsn) == bool(to_env):
        raise UsageError("give exactly one of --target DSN or --to-env ENV")
    if target_dsn:
        target = _params_from_dsn(target_dsn)
    else:
        from ragops.config import load_config

        target = _source_params(load_config(config.path, to_env))
    storage, _copy = _storages(config)
    manifest = _resolve(storage, backup_id)
    key = load_key(config, generate=False)
    check = _check_key(storage, manifest, key)
    if not check.ok:
        raise OperationFailed(f"refusing to restore {manifest.id}: {check.detail}; the target was not touched")
    check = _check_object(storage, manifest, progress)
    if not check.ok:
        raise OperationFailed(f"refusing to restore {manifest.id}: {check.detail}; the target was not touched")
    extra = []
    if clean:
        extra += ["--clean", "--if-exists"]
    if create:
        extra.append("--create")
        target = {**target, "dbname": "postgres"}   # pg_restore connects here, then creates the dump's db
    if dry_run:
        return CreatePlan(True, [f"checked: {storage.describe(manifest.id + '/' + manifest.object)} matches its "
                                 f"manifest digest and the configured key {key.key_id} decrypts it",
                                 f"would stream it (age -> zstd -> pg_restore {' '.join(extra)}) into "
                                 f"{_describe(target)}"])
    _say(progress, f"restoring {manifest.id} ({_size(manifest.stored_bytes)}) into {_describe(target)}")
    elapsed = _stream_restore(config, storage, manifest, key, target, extra, progress)
    return RestoreResult(manifest.id, _describe(target), manifest.stored_bytes, manifest.raw_bytes,
                         round(elapsed, 3), round(manifest.stored_bytes / max(elapsed, 1e-6), 1))


# ---- retention and prune --------------------------------------------------------------------

def plan_retention(backups: list[tuple[str, datetime, bool]], now: datetime, keep_last: int,
                   hourly_hours: int, daily_days: int) -> tuple[dict[str, list[str]], list[str]]:
    """Which backups to keep and why. `backups`: (id, finished time, verified ok).

    Keep the newest `keep_last`; the newest of each hour for the last `hourly_hours`; the newest
    of each day for the last `daily_days`; and always the newest verified backup."""
    ordered = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)   # newest first
    keep: dict[str, list[str]] = {}
    for backup_id, _when, _ok in ordered[:keep_last]:
        keep.setdefault(backup_id, []).append(f"one of the last {keep_last}")
    hours_seen: set = set()
    days_seen: set = set()
    for backup_id, when, _ok in ordered:
        age = now - when
        hour = when.strftime("%Y-%m-%dT%H")
        day = when.strftime("%Y-%m-%d")
        if age <= timedelta(hours=hourly_hours) and hour not in hours_seen:
            hours_seen.add(hour)
            keep.setdefault(backup_id, []).append(f"hourly {hour}:00")
        if age <= timedelta(days=daily_days) and day not in days_seen:
            days_seen.add(day)
            keep.setdefault(backup_id, []).append(f"daily {day}")
    newest_verified = next((b for b in ordered if b[2]), None)
    if newest_verified:
        keep.setdefault(newest_verified[0], []).append("newest verified")
    delete = [b[0] for b in ordered if b[0] not in keep]
    return keep, delete


def prune_backups(config, apply: bool = False, progress: Progress = None, now: datetime | None = None) -> PrunePlan:
    """Retention plus orphans (objects without a manifest, unfinished uploads); a plan unless apply."""
    storage, copy = _storages(config)
    now = now or _now()
    retention = config.backups.retention
    entries = _manifests(storage)
    items = [(m.id, _parse_iso(m.finished_at), bool(v and v.get("ok"))) for m, v in entries]
    keep, delete_ids = plan_retention(items, now, retention.keep_last, retention.hourly_hours,
                                      retention.daily_days)
    actions = [PruneAction("backup", backup_id, storage.url, "outside the retention policy")
               for backup_id in delete_ids]
    skipped: list[str] = []
    for store in [s for s in (storage, copy) if s is not None]:
        scanned = _scan(store)
        live: set[str] = set()
        for backup_id, names in scanned.items():
            if LOCK in names and _lock_alive(_safe_json(store, f"{backup_id}/{LOCK}"), now):
                live.add(backup_id)
        for backup_id, names in sorted(scanned.items()):
            if MANIFEST in names:
                continue
            if backup_id in live:
                skipped.append(f"{store.url} {backup_id}: in progress")
                continue
            for name in sorted(names):
                actions.append(PruneAction("orphan", f"{backup_id}/{name}", store.url, "no manifest"))
        for pending in store.pending_uploads():
            backup_id = pending.key.split("/", 1)[0]
            if backup_id in live:
                continue
            actions.append(PruneAction("pending-upload", pending.key, store.url,
                                       "unfinished upload" + (f" {pending.upload_id[:12]}" if pending.upload_id else "")))
        if store is copy:
            copy_ids = {b for b, names in scanned.items() if MANIFEST in names}
            for backup_id in delete_ids:
                if backup_id in copy_ids:
                    actions.append(PruneAction("backup", backup_id, copy.url, "outside the retention policy"))
    if apply:
        by_url = {s.url: s for s in (storage, copy) if s is not None}
        pending_by = {s.url: {p.key: p for p in s.pending_uploads()} for s in by_url.values()}
        for action in actions:
            store = by_url[action.storage]
            if action.kind == "backup":
                _delete_backup(store, action.target)
            elif action.kind == "orphan":
                store.delete(action.target)
            else:
                pending = pending_by[store.url].get(action.target)
                if pending:
                    store.abort_pending(pending)
            _say(progress, f"deleted {action.kind} {action.target} from {action.storage}")
    return PrunePlan(apply, keep, actions, skipped)


def _safe_json(storage, key: str) -> dict | None:
    try:
        return _read_json(storage, key)
    except OperationFailed:
        return None


def _delete_backup(storage, backup_id: str) -> None:
    """The manifest goes first: from that moment the backup does not exist for any command."""
    storage.delete(f"{backup_id}/{MANIFEST}")
    for obj in storage.list(f"{backup_id}/"):
        storage.delete(obj.key)


# ---- check (freshness gate, metrics) --------------------------------------------------------

def check_backups(config, max_age_seconds: float, metrics_file: str | None = None,
                  now: datetime | None = None) -> CheckResult:
    """Raise GateFailed when the newest good backup (verification not failed) is older than max age."""
    storage, _copy = _storages(config)
    now = now or _now()
    entries = _manifests(storage)
    good = [m for m, v in entries if not (v is not None and not v.get("ok"))]
    newest = good[-1] if good else None
    age = (now - _parse_iso(newest.finished_at)).total_seconds() if newest else None
    ok = newest is not None and age <= max_age_seconds
    result = CheckResult(ok, newest.id if newest else None, newest.finished_at if newest else None,
                         round(age, 1) if age is not None else None, max_age_seconds,
                         newest.stored_bytes if newest else None, newest.duration_seconds if newest else None,
                         len(entries), str(config.resolve_path(metrics_file)) if metrics_file else None)
    if metrics_file:
        _write_metrics(config, result, newest, entries)
    if not ok:
        if newest is None:
            raise GateFailed(f"no good backup in {storage.url}")
        raise GateFailed(f"newest good backup {newest.id} is {age / 3600:.1f}h old "
                         f"(max {max_age_seconds / 3600:.1f}h)")
    return result


def _write_metrics(config, result: CheckResult, newest: Manifest | None, entries) -> None:
    labels = f'environment="{config.env_name}",project="{config.project}"'
    lines = []

    def metric(name: str, help_text: str, value) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{labels}}} {value}"])

    if newest is not None:
        metric("ragops_backup_last_success_timestamp_seconds", "Finish time of the newest good backup.",
               f"{_parse_iso(newest.finished_at).timestamp():.3f}")
        metric("ragops_backup_last_size_bytes", "Stored size of the newest good backup.", newest.stored_bytes)
        metric("ragops_backup_last_duration_seconds", "Duration of the newest good backup.", newest.duration_seconds)
        metric("ragops_backup_age_seconds", "Age of the newest good backup.", result.age_seconds)
    verified = [v for _m, v in entries if v and v.get("ok")]
    if verified:
        metric("ragops_backup_last_verified_timestamp_seconds", "Time of the newest passed verification.",
               f"{max(_parse_iso(v['checked_at']).timestamp() for v in verified):.3f}")
    metric("ragops_backup_count", "Backups with a manifest.", len(entries))
    metric("ragops_backup_check_ok", "1 if the newest good backup is within the maximum age.", int(result.ok))
    path = config.resolve_path(result.metrics_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text("\n".join(lines) + "\n")
    os.replace(temp, path)   # node_exporter must never read half a file


# ---- lifecycle (S3 tiering) -------------------------------------------------------------------

def apply_lifecycle(config, apply: bool = False) -> LifecyclePlan:
    """S3 lifecycle rules from backups.lifecycle, on every S3 storage; a plan unless apply.
    Rules with other ids on the bucket are kept."""
    from ragops.db.storage import S3Storage

    storage, copy = _storages(config)
    s3_stores = [s for s in (storage, copy) if isinstance(s, S3Storage)]
    if not s3_stores:
        raise UsageError("backups.lifecycle: lifecycle rules apply to s3:// storage only")
    plans = []
    for store in s3_stores:
        base = f"{store.prefix}/" if store.prefix else ""
        desired = {rule.id: {"ID": rule.id, "Status": "Enabled", "Filter": {"Prefix": base + rule.prefix},
                             "Transitions": [{"Days": rule.days, "StorageClass": rule.storage_class}]}
                   for rule in config.backups.lifecycle}
        current = {r.get("ID"): r for r in store.get_lifecycle()}
        add = [i for i in desired if i not in current]
        change = [i for i in desired if i in current and _rule_key(current[i]) != _rule_key(desired[i])]
        unchanged = [i for i in desired if i in current and i not in change]
        foreign = [i for i in current if i not in desired]
        plans.append({"storage": store.url, "add": add, "change": change, "unchanged": unchanged,
                      "keep_foreign": foreign, "rules": list(desired.values())})
        if apply and (add or change):
            store.put_lifecycle([current[i] for i in foreign] + list(desired.values()))
    return LifecyclePlan(apply, plans)


def _rule_key(rule: dict) -> tuple:
    prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
    transitions = tuple((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions", []))
    return rule.get("Status"), prefix, transitions
