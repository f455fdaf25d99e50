"""`backup physical create`: a physical base backup through the same pipeline as a logical one

    pg_basebackup -D - -Ft -X fetch --checkpoint=fast  ->  zstd  ->  age  ->  sha256  ->  storage

No temporary copy of the data directory: the tar streams from the server into the storage. The
WAL needed to make the copy consistent is inside the tar (-X fetch), so a base backup restores on
its own; the archive (ragops.pitr.wal) carries it forward to any later moment. The manifest (the
same catalog as logical backups, kind "physical") records the start and stop LSN, the timeline, the
first WAL segment a restore needs, and start/stop times; it is written last.
"""
from __future__ import annotations

import re

from ragops.backup.catalog import (
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
from ragops.backup.pipeline import CommandReader, Progress, say, size_text
from ragops.errors import OperationFailed, UsageError

DATA = "base.tar.zst.age"
FORMAT = "pg_basebackup tar (-Ft -X fetch), one tablespace"


class BaseBackupReader(CommandReader):
    """pg_basebackup's tar on stdout; when it finished, the start and stop points from its -v lines."""

    points: dict | None = None

    def finish(self) -> None:
        super().finish()
        self.points = self._read_points()

    def _read_points(self) -> dict:
        assert self.stderr is not None
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace")
        start = re.search(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)", text)
        stop = re.search(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)", text)
        if not start or not stop:
            raise OperationFailed("pg_basebackup did not report its start and end points (-v)")
        return {"start_lsn": start.group(1), "timeline": int(start.group(2)), "stop_lsn": stop.group(1)}


def basebackup_reader(config, params: dict) -> BaseBackupReader:
    from ragops.backup.pg import pg_tool, tool_call

    conninfo, env = tool_call(params)
    return BaseBackupReader("pg_basebackup", [pg_tool(config, "pg_basebackup"), "-D", "-", "-Ft", "-X", "fetch",
                                              "--checkpoint=fast", "-v", "--no-password", "-d", conninfo], env)


def create_physical(config, label: str | None = None, progress: Progress = None,
                    dry_run: bool = False) -> Manifest | CreatePlan:
    """Stream a base backup of the primary into the backup storage; the manifest is written last."""
    from ragops.backup.compressors import get_compressor
    from ragops.backup.crypters import get_crypter
    from ragops.backup.pg import describe, source_params

    if label is not None and not re.fullmatch(r"[\w.:@+-]{1,100}", label):
        raise UsageError(f"--label: use letters, digits and ._:@+- (at most 100), got {label!r}")
    compressor = get_compressor(None, config.backups.compression_level)
    crypter = get_crypter(config, generate=not dry_run) if not dry_run or config.backups.encryption_key else None
    storage, copy = storages(config)
    params = {**source_params(config), "dbname": "postgres"}
    if dry_run:
        return CreatePlan(True, [
            f"pg_basebackup -D - -Ft -X fetch --checkpoint=fast from {describe(params)}",
            f"  ->  {compressor.name} level {compressor.level}  ->  age "
            f"(key {crypter.key_id if crypter else 'generated on first use'})  ->  sha256",
            f"stream into {storage.describe('<id>/' + DATA)}" + (f", copy to {copy.url}" if copy else ""),
            f"write {storage.describe('<id>/' + MANIFEST)} last (the commit point)"])
    backup_id = new_backup_id()
    started = now_utc()
    write_lock(storage, backup_id, started)
    try:
        say(progress, f"{backup_id}: base backup of {describe(params)} into {storage.url}")
        manifest = _stream(config, storage, backup_id, started, params, compressor, crypter, label, progress)
        if copy:
            from ragops.backup.create import _copy_backup

            say(progress, f"{backup_id}: copying to {copy.url}")
            _copy_backup(storage, copy, manifest, progress)
            manifest.copies.append(copy.url)
            copy.put_bytes(f"{backup_id}/{MANIFEST}", manifest_bytes(manifest))
        storage.put_bytes(f"{backup_id}/{MANIFEST}", manifest_bytes(manifest))   # the commit point
    finally:
        drop_lock(storage, backup_id)
    say(progress, f"{backup_id}: done, {size_text(manifest.raw_bytes)} read, {size_text(manifest.stored_bytes)} "
                  f"stored in {manifest.duration_seconds:.1f}s")
    return manifest


def _stream(config, storage, backup_id: str, started, params: dict, compressor, crypter, label,
            progress: Progress) -> Manifest:
    from ragops import __version__
    from ragops.backup import pipeline
    from ragops.backup.pg import connect
    from ragops.pitr.wal import parse_lsn, segment_of_lsn

    with connect(params) as conn:
        server_version = conn.execute("SELECT current_setting('server_version')").fetchone()[0]
    reader = basebackup_reader(config, params)
    stored = pipeline.store(reader, compressor, crypter, storage, f"{backup_id}/{DATA}", progress)
    points = reader.points or {}
    finished = now_utc()
    physical = {**points, "start_time": iso(started), "stop_time": iso(finished), "tablespaces": ["pg_default"],
                "start_wal_file": segment_of_lsn(points["timeline"], parse_lsn(points["start_lsn"])),
                "stop_wal_file": segment_of_lsn(points["timeline"], parse_lsn(points["stop_lsn"]))}
    return Manifest(
        id=backup_id, project=config.project, environment=config.env_name, database="(cluster)",
        server_version=server_version, started_at=iso(started), finished_at=iso(finished),
        duration_seconds=round((finished - started).total_seconds(), 3), wal_lsn=points["start_lsn"],
        wal_file=physical["start_wal_file"], raw_bytes=stored.raw_bytes, stored_bytes=stored.stored_bytes,
        sha256=stored.sha256, compression=compressor.manifest_fields(), encryption=crypter.manifest_fields(),
        row_counts={}, ragops_version=__version__, label=label, object=DATA, dump_format=FORMAT,
        kind="physical", physical=physical)
