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

from ragops.backup.catalog import MANIFEST, CreatePlan, Manifest, iso, now_utc
from ragops.backup.pipeline import CommandReader, Progress
from ragops.errors import OperationFailed

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
    from ragops.backup.create import backup_stages, commit_backup
    from ragops.backup.pg import describe

    compressor, crypter, storage, copy = backup_stages(config, label, dry_run)
    params = source_params(config)
    if dry_run:
        return CreatePlan(True, [
            f"pg_basebackup -D - -Ft -X fetch --checkpoint=fast from {describe(params)}",
            f"  ->  {compressor.name} level {compressor.level}  ->  age "
            f"(key {crypter.key_id if crypter else 'generated on first use'})  ->  sha256",
            f"stream into {storage.describe('<id>/' + DATA)}" + (f", copy to {copy.url}" if copy else ""),
            f"write {storage.describe('<id>/' + MANIFEST)} last (the commit point)"])
    return commit_backup(
        storage, copy, progress, f"base backup of {describe(params)} into {storage.url}", "read",
        lambda backup_id, started: _stream(config, storage, backup_id, started, params, compressor, crypter, label,
                                           progress))


def source_params(config) -> dict:
    """libpq parameters for the primary's `postgres` database, parsed without importing psycopg (a
    physical backup never needs it: its start-up is part of the backup's wall time)."""
    from ragops.backup.pg import params_from_dsn

    if config.database.dsn:
        dsn = config.reveal(config.database.dsn, "database.dsn")
    else:
        from ragops.db.connect import node_dsn

        dsn = node_dsn(config, dbname=config.database.name)
    return {**params_from_dsn(dsn), "dbname": "postgres"}


def server_version(config, params: dict) -> str:
    """SHOW server_version through psql (a few milliseconds; psycopg's import alone takes 0.1-0.3 s)."""
    import subprocess

    from ragops.backup.pg import describe, pg_tool, tool_call
    from ragops.secrets import redact

    conninfo, env = tool_call(params)
    try:
        done = subprocess.run([pg_tool(config, "psql"), "-X", "-A", "-t", "-q", "-w", "-d", conninfo, "-c",
                               "SHOW server_version"], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise OperationFailed(f"cannot connect to {describe(params)}: no answer within 60s") from None
    if done.returncode != 0 or not done.stdout.strip():
        reason = (done.stderr.strip().splitlines() or [f"psql exit {done.returncode}"])[0]
        raise OperationFailed(f"cannot connect to {describe(params)}: {redact(reason.removeprefix('psql: ').removeprefix('error: '))}")
    return done.stdout.strip()


def _stream(config, storage, backup_id: str, started, params: dict, compressor, crypter, label,
            progress: Progress) -> Manifest:
    from ragops import __version__
    from ragops.backup import pipeline
    from ragops.pitr.wal import parse_lsn, segment_of_lsn

    version = server_version(config, params)
    reader = basebackup_reader(config, params)
    stored = pipeline.store(reader, compressor, crypter, storage, f"{backup_id}/{DATA}", progress)
    points = reader.points or {}
    finished = now_utc()
    physical = {**points, "start_time": iso(started), "stop_time": iso(finished), "tablespaces": ["pg_default"],
                "start_wal_file": segment_of_lsn(points["timeline"], parse_lsn(points["start_lsn"])),
                "stop_wal_file": segment_of_lsn(points["timeline"], parse_lsn(points["stop_lsn"]))}
    return Manifest(
        id=backup_id, project=config.project, environment=config.env_name, database="(cluster)",
        server_version=version, started_at=iso(started), finished_at=iso(finished),
        duration_seconds=round((finished - started).total_seconds(), 3), wal_lsn=points["start_lsn"],
        wal_file=physical["start_wal_file"], raw_bytes=stored.raw_bytes, stored_bytes=stored.stored_bytes,
        sha256=stored.sha256, compression=compressor.manifest_fields(), encryption=crypter.manifest_fields(),
        row_counts={}, ragops_version=__version__, label=label, object=DATA, dump_format=FORMAT,
        kind="physical", physical=physical)
