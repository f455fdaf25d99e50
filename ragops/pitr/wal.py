"""The continuous WAL archive: segment names, the spool, and the shipper.

    PostgreSQL archive_command (cp + sync + mv, no interpreter)  ->  spool directory
    shipper (one long-lived process)  ->  zstd -> age -> sha256 -> storage  wal/<timeline>/<segment>.zst.age
                                      ->  wal/<timeline>/<segment>.json   (written last: the commit point)
                                      ->  the spool file is removed

A segment leaves the spool only after its sidecar is stored, so a shipper killed at any moment
ships the same file again when it starts (the upload is idempotent) and no segment is lost;
PostgreSQL keeps a segment until archive_command succeeded, so a dead shipper never loses WAL either.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ragops.db.bringup import spool_dir  # where archive_command writes: the bring-up sets it at initdb
from ragops.errors import OperationFailed

WAL_DIR = "wal"
SEGMENT_SIZE = 16 * 1024 * 1024
SEGMENTS_PER_XLOGID = 0x100000000 // SEGMENT_SIZE
SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history$")
PARTIAL_RE = re.compile(r"^([0-9A-F]{24})\.partial$")
# a base backup's history file (start/stop points, label): informational only, the manifest records
# the same; the shipper drops it from the spool instead of keeping it there forever
BACKUP_LABEL_RE = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
SUFFIX = ".zst.age"


# ---- names ------------------------------------------------------------------------------------

def parse_lsn(text: str) -> int:
    """'0/3000028' -> 50331688."""
    match = re.fullmatch(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})", text.strip())
    if not match:
        raise ValueError(f"not an LSN: {text!r} (expected like 0/3000028)")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def segment_name(timeline: int, segno: int) -> str:
    return f"{timeline:08X}{segno // SEGMENTS_PER_XLOGID:08X}{segno % SEGMENTS_PER_XLOGID:08X}"


def segment_of_lsn(timeline: int, lsn: int) -> str:
    return segment_name(timeline, lsn // SEGMENT_SIZE)


def parse_segment(name: str) -> tuple[int, int]:
    """'000000010000000000000003' -> (timeline 1, segment number 3)."""
    match = SEGMENT_RE.match(name)
    if not match:
        raise ValueError(f"not a WAL segment name: {name!r}")
    return int(match.group(1), 16), int(match.group(2), 16) * SEGMENTS_PER_XLOGID + int(match.group(3), 16)


def archivable(name: str) -> bool:
    return bool(SEGMENT_RE.match(name) or HISTORY_RE.match(name) or PARTIAL_RE.match(name))


def object_key(name: str) -> str:
    """wal/<timeline>/<file>.zst.age: a listing shows timelines and continuity at a glance."""
    return f"{WAL_DIR}/{name[:8]}/{name}{SUFFIX}"


def sidecar_key(name: str) -> str:
    return f"{WAL_DIR}/{name[:8]}/{name}.json"


# ---- where ------------------------------------------------------------------------------------

# ---- the shipper ------------------------------------------------------------------------------

class SpoolFileReader:
    """A reader stage over one spooled file, opened without following a symlink (the directory is
    the server account's)."""

    name = "wal-file"

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> SpoolFileReader:
        from ragops.backup.pipeline import CountingReader

        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        self.handle = os.fdopen(fd, "rb")
        self.stream = CountingReader(self.handle)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def finish(self) -> None:
        pass


class LocalSpool:
    """The spool as a directory on this machine (Platform.wal_spool gives another, e.g. on an ssh host):
    names, a reader stage per file, its archive time, remove."""

    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def names(self) -> list[str]:
        try:
            return os.listdir(self.path)
        except FileNotFoundError:
            return []

    def reader(self, name: str) -> SpoolFileReader:
        return SpoolFileReader(self.path / name)

    def archived_at(self, name: str) -> str:
        return iso_mtime(self.path / name)

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)


@dataclass
class ShipResult:
    shipped: list[str]
    failed: dict[str, str]


class Shipper:
    def __init__(self, config, progress=None):
        from ragops.backup.catalog import storages
        from ragops.backup.compressors import get_compressor
        from ragops.backup.crypters import get_crypter
        from ragops.platforms import platform_class

        self.config = config
        self.spool = platform_class(config).wal_spool(config) or LocalSpool(spool_dir(config))
        self.storage, self.copy = storages(config)
        self.compressor = get_compressor(None, config.backups.wal.compression_level)
        self.crypter = get_crypter(config, generate=True)
        self.progress = progress

    def pending(self) -> list[str]:
        """Finished files in the spool, history files first (a new timeline's first need)."""
        names = [n for n in self.spool.names() if archivable(n)]
        return sorted(names, key=lambda n: (not n.endswith(".history"), n))

    def drop_backup_labels(self) -> None:
        for name in [n for n in self.spool.names() if BACKUP_LABEL_RE.match(n)]:
            self.spool.remove(name)

    def ship_one(self, name: str) -> None:
        from ragops.backup import pipeline
        from ragops.backup.catalog import iso, now_utc
        from ragops.pitr.writeonce import already_archived

        if already_archived(self, name, object_key(name), sidecar_key(name)):   # the same content: a no-op; different content raises
            self.spool.remove(name)
            return
        archived_at = self.spool.archived_at(name)
        stored = pipeline.store(self.spool.reader(name), self.compressor, self.crypter, self.storage, object_key(name))
        sidecar = {"name": name, "sha256": stored.sha256, "stored_bytes": stored.stored_bytes,
                   "raw_bytes": stored.raw_bytes, "archived_at": archived_at, "shipped_at": iso(now_utc()),
                   "compression": self.compressor.manifest_fields(), "encryption": self.crypter.manifest_fields()}
        body = (json.dumps(sidecar, sort_keys=True) + "\n").encode()
        for store in [s for s in (self.storage, self.copy) if s is not None]:
            if store is self.copy:
                self.copy.put_bytes(object_key(name), self.storage.get_bytes(object_key(name)))
            store.put_bytes(sidecar_key(name), body)   # the commit point
        self.spool.remove(name)   # another shipper may have committed and removed it meanwhile

    def ship_once(self) -> ShipResult:
        result = ShipResult([], {})
        try:
            self.drop_backup_labels()
            pending = self.pending()
        except OSError as exc:   # a spool on an ssh host that does not answer: retried by the caller
            result.failed["(spool)"] = f"cannot list the WAL spool {self.spool}: {exc}"
            return result
        for name in pending:
            try:
                self.ship_one(name)
            except FileNotFoundError as exc:
                # two shippers (the process and `backup wal ship` or `db recover`) may take one file; the
                # one that finishes first commits the sidecar, then removes the file: then it is shipped
                if self.storage.exists(sidecar_key(name)):
                    continue
                result.failed[name] = str(exc)
                break
            except (OperationFailed, OSError) as exc:
                result.failed[name] = getattr(exc, "message", str(exc))
                break   # in order: a later segment never overtakes a failed one
            result.shipped.append(name)
            if self.progress:
                self.progress(f"shipped {name}")
        if not result.failed:
            from ragops.pitr.writeonce import clear

            clear(self.config)
        return result


def iso_mtime(path: Path) -> str:
    from datetime import UTC, datetime

    from ragops.backup.catalog import iso

    return iso(datetime.fromtimestamp(os.stat(path, follow_symlinks=False).st_mtime, UTC))


def run(config) -> None:
    """The shipper's loop (`python -m ragops.pitr.wal CONFIG ENV`): ship, sleep, repeat; errors retried."""
    shipper = Shipper(config, progress=lambda m: print(m, flush=True))
    backoff = 0.0
    while True:
        result = shipper.ship_once()
        for name, error in result.failed.items():
            print(f"error: {name}: {error}", flush=True)
        backoff = min(30.0, max(1.0, backoff * 2)) if result.failed else 0.0
        time.sleep(backoff or config.backups.wal.poll_interval)


def main(argv: list[str]) -> None:
    from ragops.config import load_config

    run(load_config(Path(argv[0]), argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
