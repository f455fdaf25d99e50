"""`backup create`: export a snapshot, count rows in it, and stream pg_dump through the pipeline

    pg_dump -Fc -Z0 --snapshot=S  ->  zstd  ->  age  ->  sha256  ->  storage (file:// or s3://)

No temporary file the size of the database; memory stays flat (the largest buffer is one S3
part). The row counts come from the same exported snapshot pg_dump reads, so they match the dump
exactly. The manifest is written last: it is the commit point.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime

from ragops.backup import pipeline
from ragops.backup.catalog import (
    DATA,
    MANIFEST,
    CreatePlan,
    Manifest,
    drop_lock,
    iso,
    manifest_bytes,
    new_backup_id,
    now_utc,
    storages,
    write_lock,
)
from ragops.backup.pg import connect, describe, pg_dump_reader, row_counts, source_params
from ragops.backup.pipeline import Meter, Progress, say, size_text
from ragops.errors import OperationFailed, UsageError


def create_backup(config, label: str | None = None, progress: Progress = None,
                  dry_run: bool = False) -> Manifest | CreatePlan:
    """Dump the primary, compress, encrypt, digest and store; the manifest is written last."""
    compressor, crypter, storage, copy = backup_stages(config, label, dry_run)
    params = source_params(config)
    if dry_run:
        return _plan(config, storage, copy, params, compressor, crypter)
    return commit_backup(
        storage, copy, progress, f"dumping {describe(params)} into {storage.url}", "dumped",
        lambda backup_id, started: _dump(config, storage, backup_id, started, params, compressor, crypter, label,
                                         progress))


def backup_stages(config, label: str | None, dry_run: bool) -> tuple:
    """The checks and stages every kind of backup starts with: (compressor, crypter, storage, copy
    storage or None). The crypter is None in a dry run without a configured key (none is generated)."""
    from ragops.backup.compressors import get_compressor
    from ragops.backup.crypters import get_crypter

    if label is not None and not re.fullmatch(r"[\w.:@+-]{1,100}", label):
        raise UsageError(f"--label: use letters, digits and ._:@+- (at most 100), got {label!r}")
    backups = config.backups
    compressor = get_compressor(None, backups.compression_level, threads=backups.compression_threads)
    crypter = get_crypter(config, generate=not dry_run) if not dry_run or backups.encryption_key else None
    storage, copy = storages(config)
    return compressor, crypter, storage, copy


def commit_backup(storage, copy, progress: Progress, doing: str, verb: str,
                  stream: Callable[[str, datetime], Manifest]) -> Manifest:
    """The skeleton shared by logical and physical backups: a new id, the lock, `stream(id, started)`
    (which stores the data object and returns its manifest), the copy to backups.copy_to, and the
    manifest last (the commit point); the lock goes in every case."""
    started = now_utc()
    backup_id = new_backup_id()
    # claimed before any data is written: the lock object is created only if absent, and a finished
    # backup of that id (its lock gone, its manifest there) refuses it too
    claimed = write_lock(storage, backup_id, started)
    if not claimed or storage.exists(f"{backup_id}/{MANIFEST}"):
        if claimed:
            drop_lock(storage, backup_id)
        raise OperationFailed(f"backup id {backup_id} is taken in {storage.url} (another backup claimed it); "
                              "nothing was written", hint="run the backup again")
    try:
        say(progress, f"{backup_id}: {doing}")
        manifest = stream(backup_id, started)
        if copy:
            say(progress, f"{backup_id}: copying to {copy.url}")
            _copy_backup(storage, copy, manifest, progress)
            manifest.copies.append(copy.url)
            _create_manifest(copy, manifest)
        _create_manifest(storage, manifest)   # the commit point
    finally:
        drop_lock(storage, backup_id)   # anything left without a manifest is an orphan for prune
    say(progress, f"{backup_id}: done, {size_text(manifest.raw_bytes)} {verb}, {size_text(manifest.stored_bytes)} "
                  f"stored in {manifest.duration_seconds:.1f}s")
    return manifest


def _create_manifest(storage, manifest: Manifest) -> None:
    """Write the manifest only if none exists: a backup never replaces another one's."""
    if not storage.put_bytes_if_absent(f"{manifest.id}/{MANIFEST}", manifest_bytes(manifest)):
        raise OperationFailed(f"{storage.describe(manifest.id + '/' + MANIFEST)} already exists: another backup "
                              "wrote the same id; this one is not recorded (prune removes its data)")


def _plan(config, storage, copy, params, compressor, crypter) -> CreatePlan:
    tables = config.backups.tables
    steps = [f"export a snapshot on {describe(params)} and count rows of {', '.join(tables) or '(none)'}",
             f"pg_dump -Fc -Z0 --snapshot  ->  {compressor.name} level {compressor.level}  ->  age "
             f"(key {crypter.key_id if crypter else 'generated on first use'})  ->  sha256",
             f"stream into {storage.describe('<id>/' + DATA)}"]
    if copy:
        steps.append(f"copy to {copy.describe('<id>/' + DATA)} and check its digest")
    steps.append(f"write {storage.describe('<id>/' + MANIFEST)} last (the commit point)")
    return CreatePlan(True, steps)


def _snapshot(cur, tables: list[str]) -> tuple[str, str, str, str | None, dict]:
    """Export a snapshot in the open transaction: (snapshot, server version, WAL LSN, WAL file, row counts)."""
    # pg_dump reads the snapshot exported here, so the row counts match the dump exactly
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    cur.execute("SELECT pg_export_snapshot(), current_setting('server_version'), pg_is_in_recovery()")
    snapshot, server_version, in_recovery = cur.fetchone()
    if in_recovery:
        cur.execute("SELECT pg_last_wal_replay_lsn()::text, NULL")
    else:
        cur.execute("SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())")
    wal_lsn, wal_file = cur.fetchone()
    return snapshot, server_version, wal_lsn, wal_file, row_counts(cur, tables)


def _dump(config, storage, backup_id: str, started: datetime, params: dict, compressor, crypter,
          label, progress) -> Manifest:
    from ragops import __version__

    conn = connect(params, autocommit=False)
    try:
        with conn.cursor() as cur:
            snapshot, server_version, wal_lsn, wal_file, counts = _snapshot(cur, config.backups.tables)
        # the snapshot lives as long as this transaction: pg_dump runs while it is open
        stored = pipeline.store(pg_dump_reader(config, params, snapshot), compressor, crypter, storage,
                                f"{backup_id}/{DATA}", progress)
    finally:
        conn.close()
    finished = now_utc()
    return Manifest(
        id=backup_id, project=config.project, environment=config.env_name, database=params.get("dbname", ""),
        server_version=server_version, started_at=iso(started), finished_at=iso(finished),
        duration_seconds=round((finished - started).total_seconds(), 3), wal_lsn=wal_lsn, wal_file=wal_file,
        raw_bytes=stored.raw_bytes, stored_bytes=stored.stored_bytes, sha256=stored.sha256,
        compression=compressor.manifest_fields(), encryption=crypter.manifest_fields(),
        row_counts=counts, ragops_version=__version__, label=label)


def _copy_backup(source, dest, manifest: Manifest, progress: Progress) -> None:
    from ragops.backup.storage import put_stream

    key = manifest.object_key
    meter = Meter(progress, "copied", manifest.stored_bytes)

    def chunks() -> Iterator[bytes]:
        for chunk in source.read_chunks(key):
            meter.add(len(chunk))
            yield chunk

    size, digest = put_stream(dest, key, chunks())
    if digest != manifest.sha256 or size != manifest.stored_bytes:
        dest.delete(key)
        raise OperationFailed(f"copy to {dest.describe(key)}: digest mismatch after copying")
