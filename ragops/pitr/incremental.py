"""Incremental base backups (the guide's "hourly incremental"): only the files that changed since the
parent base backup, in a tar through the same pipeline; the chain (full first) is recorded in the
manifest and checked before any restore uses it.

PostgreSQL 16 has no incremental pg_basebackup (17 has), so this is pgBackRest's file-level method,
on the local platform where ragops can read the data directory:

    pg_backup_start(fast)  ->  walk the data directory: a file whose size and mtime are those the parent
    recorded, and whose mtime is older than the parent's start, is unchanged; every other file goes
    into the tar  ->  pg_backup_stop(wait for the archive)  ->  backup_label into the tar

A page written during the copy may be torn: as with pg_basebackup, replaying the WAL from the
backup's start point (full-page writes) repairs it, so the WAL archive is required. Restore extracts
the full backup, lays each incremental over it in order, removes the files the newest one no longer
lists, and replays from the newest one's start point.
"""
from __future__ import annotations

import os
import stat
import tarfile
import threading
from pathlib import Path

from ragops.backup.pipeline import CountingReader
from ragops.errors import OperationFailed, UsageError

DATA = "incremental.tar.zst.age"
FORMAT = "ragops incremental tar (files changed since the parent base backup), one tablespace"
# directories whose contents pg_basebackup leaves out too (the server rebuilds them at start)
SKIP_CONTENTS = frozenset({"pg_wal", "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify", "pg_serial",
                           "pg_snapshots", "pg_subtrans"})
SKIP_FILES = frozenset({"postmaster.pid", "postmaster.opts", "backup_label", "backup_label.old", "tablespace_map",
                        "backup_manifest", "standby.signal", "recovery.signal", "pg_internal.init"})
CONTROL = "global/pg_control"
MARGIN_NS = 2_000_000_000   # timestamps within 2 s of the parent's start count as changed


def snapshot_files(data_dir: Path) -> dict[str, list[int]]:
    """Every file a base backup holds: relative path -> [size, mtime_ns]."""
    files: dict[str, list[int]] = {}
    for root, dirs, names in os.walk(data_dir):
        rel_root = os.path.relpath(root, data_dir)
        if rel_root == "pg_tblspc" and (dirs or names):
            raise UsageError("incremental base backups support the default tablespace only "
                             f"(found {len(dirs) + len(names)} in pg_tblspc)")
        dirs[:] = [d for d in dirs if not d.startswith("pgsql_tmp")]
        if rel_root in SKIP_CONTENTS:
            dirs[:] = []
            continue
        for name in names:
            if name in SKIP_FILES or name.startswith("pgsql_tmp"):
                continue
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:   # dropped while we walk: the WAL replay drops it too
                continue
            if stat.S_ISREG(info.st_mode):
                files[os.path.normpath(os.path.join(rel_root, name))] = [info.st_size, info.st_mtime_ns]
    return files


def changed_files(files: dict[str, list[int]], parent_files: dict[str, list[int]] | None,
                  parent_start_ns: int) -> list[str]:
    """The files to copy: new, resized, touched since the parent started, or (parent without a list: a
    pg_basebackup full) touched since it started. pg_control always, and last."""
    changed = []
    for rel, (size, mtime) in sorted(files.items()):
        if rel == CONTROL:
            continue
        recent = mtime >= parent_start_ns - MARGIN_NS
        if parent_files is None:
            if recent:
                changed.append(rel)
        elif recent or parent_files.get(rel) != [size, mtime]:
            changed.append(rel)
    return changed + ([CONTROL] if CONTROL in files else [])


class IncrementalReader:
    """A reader stage: a thread writes the tar of the changed files into a pipe between
    pg_backup_start and pg_backup_stop (one session holds the backup open)."""

    name = "incremental base backup"

    def __init__(self, params: dict, data_dir: Path, parent_files: dict | None, parent_start_ns: int, label: str):
        self.params, self.data_dir, self.label = params, data_dir, label
        self.parent_files, self.parent_start_ns = parent_files, parent_start_ns
        self.points: dict | None = None
        self.error: BaseException | None = None
        self.stream: CountingReader

    def __enter__(self) -> IncrementalReader:
        import psycopg

        from ragops.backup.pg import connect

        self.conn = connect(self.params)
        try:
            start = self.conn.execute("SELECT pg_backup_start(%s, true)", (self.label,)).fetchone()[0]
            timeline = self.conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
        except psycopg.Error as exc:
            self.conn.close()
            raise OperationFailed(f"pg_backup_start failed: {str(exc).strip().splitlines()[0]}") from None
        self.points = {"start_lsn": str(start), "timeline": int(timeline)}
        read_fd, write_fd = os.pipe()
        self._out = os.fdopen(write_fd, "wb", buffering=1024 * 1024)
        self.stream = CountingReader(os.fdopen(read_fd, "rb"))
        self.thread = threading.Thread(target=self._run, name="incremental-tar", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with tarfile.open(fileobj=self._out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                files = snapshot_files(self.data_dir)
                changed = changed_files(files, self.parent_files, self.parent_start_ns)
                copied = sum(_add_file(tar, self.data_dir, rel, files[rel][0]) for rel in changed)
                stop, label, spcmap = self.conn.execute(
                    "SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(true)").fetchone()
                _add_bytes(tar, "backup_label", label.encode())
                if spcmap:
                    _add_bytes(tar, "tablespace_map", spcmap.encode())
            assert self.points is not None
            self.points.update(stop_lsn=str(stop), files=files, changed_files=len(changed), changed_bytes=copied)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by finish()
            self.error = exc
        finally:
            try:
                self._out.close()
            except OSError:
                pass

    def finish(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise OperationFailed(f"{self.name}: {self.error}")

    def __exit__(self, *exc) -> None:
        if self.thread.is_alive():      # the consumer failed: unblock the writer, the session's end aborts the backup
            self.stream.raw.close()
            self.thread.join(30)
        self.conn.close()


def _add_file(tar: tarfile.TarFile, data_dir: Path, rel: str, size: int) -> int:
    """The file's first `size` bytes (the size seen by the walk; a file that shrank since is padded
    with zeros, one that grew is cut: the WAL replay rewrites both, as for pg_basebackup)."""
    info = tarfile.TarInfo(rel)
    info.size, info.mode = size, 0o600
    try:
        handle = open(data_dir / rel, "rb")   # noqa: SIM115 - closed below
    except FileNotFoundError:   # dropped since the walk: the replay drops it too
        return 0
    with handle:
        tar.addfile(info, _Exactly(handle, size))
    return size


class _Exactly:
    """read() that yields exactly `size` bytes: the file's, then zeros."""

    def __init__(self, handle, size: int):
        self.handle, self.left = handle, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.handle.read(n) if n else b""
        data += b"\0" * (n - len(data))
        self.left -= n
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def chain_of(storage, manifest) -> list:
    """The manifests a restore of `manifest` applies, full first; OperationFailed naming the first link
    that is missing, unfinished or not what the chain recorded."""
    from ragops.backup.catalog import resolve

    incremental = (manifest.physical or {}).get("incremental")
    if not incremental:
        return [manifest]
    chain = []
    for backup_id in incremental["chain"]:
        try:
            link = resolve(storage, backup_id)
        except OperationFailed:
            link = None
        if link is None or link.kind != "physical":
            raise OperationFailed(f"incremental backup {manifest.id} needs {backup_id}, which is missing from "
                                  f"{storage.url}: its chain is broken; restore an older base backup")
        chain.append(link)
    return chain + [manifest]


def apply_links(directory: Path, newest) -> int:
    """After the links were extracted in order: remove the files the newest backup no longer lists
    (dropped tables, compacted relations) and the full backup's old WAL. Returns how many went."""
    listed = set(newest.physical["incremental"]["files"])
    removed = 0
    for rel, _size in snapshot_files(directory).items():
        if rel not in listed:
            (directory / rel).unlink()
            removed += 1
    wal = directory / "pg_wal"
    for entry in wal.iterdir() if wal.is_dir() else []:
        if entry.is_file():
            entry.unlink()
    return removed
