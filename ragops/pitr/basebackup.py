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

from ragops.backup.catalog import MANIFEST, CreatePlan, Manifest, iso, now_utc, parse_iso
from ragops.backup.pipeline import CommandReader, Progress, say
from ragops.errors import OperationFailed, UsageError
from ragops.pitr.incremental import IncrementalReader

DATA = "base.tar.zst.age"
INCREMENTAL_DATA = "incremental.tar.zst.age"   # ragops.pitr.incremental.DATA
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
                    dry_run: bool = False, incremental: bool = False) -> Manifest | CreatePlan:
    """Stream a base backup of the primary into the backup storage; the manifest is written last.
    `incremental`: only the files changed since the newest base backup (ragops/pitr/incremental.py)."""
    from ragops.backup.create import backup_stages, commit_backup
    from ragops.backup.pg import describe

    compressor, crypter, storage, copy = backup_stages(config, label, dry_run)
    params = source_params(config)
    increment = _incremental_source(config, storage, params) if incremental else None
    if dry_run and increment:
        parent, data_dir = increment
        return CreatePlan(True, [
            f"pg_backup_start, then the files of {data_dir} changed since base backup {parent.id}, pg_backup_stop",
            f"  ->  {compressor.name} level {compressor.level}  ->  age  ->  sha256",
            f"stream into {storage.describe('<id>/' + INCREMENTAL_DATA)}" + (f", copy to {copy.url}" if copy else ""),
            f"write {storage.describe('<id>/' + MANIFEST)} last (the commit point), chain "
            f"{' -> '.join(_chain_ids(parent) + ['<id>'])}"])
    if dry_run:
        return CreatePlan(True, [
            f"pg_basebackup -D - -Ft -X fetch --checkpoint=fast from {describe(params)}",
            f"  ->  {compressor.name} level {compressor.level}  ->  age "
            f"(key {crypter.key_id if crypter else 'generated on first use'})  ->  sha256",
            f"stream into {storage.describe('<id>/' + DATA)}" + (f", copy to {copy.url}" if copy else ""),
            f"write {storage.describe('<id>/' + MANIFEST)} last (the commit point)"])
    what = "incremental base backup" if increment else "base backup"
    return commit_backup(
        storage, copy, progress, f"{what} of {describe(params)} into {storage.url}", "read",
        lambda backup_id, started: _stream(config, storage, backup_id, started, params, compressor, crypter, label,
                                           progress, increment))


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


def _incremental_source(config, storage, params: dict):
    """(parent manifest, data directory) for an incremental backup, or a one-line refusal."""
    from ragops.backup.catalog import manifests
    from ragops.backup.pg import connect
    from ragops.db.bringup import live_primary
    from ragops.platforms import get_platform

    if not get_platform(config).owns_database_files or config.database.dsn:
        raise UsageError("--incremental reads the primary's data directory: local platform with managed nodes only")
    bases = [m for m, _v in manifests(storage) if m.kind == "physical" and m.physical]
    if not bases:
        raise UsageError(f"--incremental: no base backup in {storage.url} to build on; take a full one first "
                         "(ragops backup create --physical)")
    parent = bases[-1]
    assert parent.physical is not None
    with connect(params) as conn:
        timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    if int(timeline) != int(parent.physical["timeline"]):
        raise UsageError(f"--incremental: the primary is on timeline {timeline} but base backup {parent.id} is on "
                         f"{parent.physical['timeline']} (a promotion since): take a full base backup first")
    primary = live_primary(config)
    if primary is None:
        raise OperationFailed("--incremental: no managed node accepts writes (ragops db status)")
    return parent, primary.data_dir


def _chain_ids(parent: Manifest) -> list[str]:
    return [*((parent.physical or {}).get("incremental") or {}).get("chain", []), parent.id]


def _stream(config, storage, backup_id: str, started, params: dict, compressor, crypter, label,
            progress: Progress, increment=None) -> Manifest:
    from ragops import __version__
    from ragops.backup import pipeline
    from ragops.pitr.wal import parse_lsn, segment_of_lsn

    version = server_version(config, params)
    obj, dump_format = DATA, FORMAT
    reader: BaseBackupReader | IncrementalReader = basebackup_reader(config, params)
    if increment:
        from ragops.pitr import incremental

        parent, data_dir = increment
        start_ns = int(parse_iso(parent.physical["start_time"]).timestamp() * 1e9)
        obj, dump_format = incremental.DATA, incremental.FORMAT
        reader = IncrementalReader(params, data_dir, (parent.physical.get("incremental") or {}).get("files"),
                                   start_ns, f"ragops {backup_id}")
    stored = pipeline.store(reader, compressor, crypter, storage, f"{backup_id}/{obj}", progress)
    points = dict(reader.points or {})
    if increment:
        files, changed, changed_bytes = points.pop("files"), points.pop("changed_files"), points.pop("changed_bytes")
        points["incremental"] = {"parent": increment[0].id, "chain": _chain_ids(increment[0]),
                                 "changed_files": changed, "changed_bytes": changed_bytes, "files": files}
        say(progress, f"{backup_id}: {changed} of {len(files)} files changed since {increment[0].id}")
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
        row_counts={}, ragops_version=__version__, label=label, object=obj, dump_format=dump_format,
        kind="physical", physical=physical)
