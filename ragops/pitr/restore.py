"""`backup physical restore`: a data directory at a moment in time.

    checks (no byte written before they pass): the target, the coverage, the key, the base digest
    base backup:  storage -> age -> zstd -> tar -x  into DIR
    WAL:          every segment from the base's first to the target's, fetched, digest-checked,
                  decrypted and decompressed into DIR/pg_ragops_restore/ (a missing or damaged one
                  stops the restore naming it) -- before PostgreSQL starts
    replay:       restore_command = cp (no interpreter per segment), recovery_target_*, promote

Prefetching is what keeps the per-segment cost at one `cp`: ragops does the storage, the digest and
the decryption in one process, PostgreSQL copies files.
"""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ragops.backup.catalog import Manifest, iso, parse_iso, resolve, stages_of, storages
from ragops.backup.pipeline import Progress, say
from ragops.errors import OperationFailed, UsageError
from ragops.pitr.coverage import Coverage, coverage
from ragops.pitr.wal import object_key, parse_lsn, parse_segment, segment_name, sidecar_key

WAL_SUBDIR = "pg_ragops_restore"


@dataclass
class Target:
    time: str | None = None
    lsn: str | None = None
    latest: bool = False

    def describe(self) -> str:
        return f"time {self.time}" if self.time else f"LSN {self.lsn}" if self.lsn else "the end of the archive"


@dataclass
class PhysicalRestore:
    backup_id: str
    target_dir: str
    target: str
    segments: int
    recovered_to: str | None           # the last replayed transaction's commit time (PostgreSQL's log)
    rpo_seconds: float | None          # target time minus that commit time
    seconds: float
    port: int | None
    running: bool


def parse_target(to_time: str | None, to_lsn: str | None, to_latest: bool) -> Target:
    if sum(bool(x) for x in (to_time, to_lsn, to_latest)) != 1:
        raise UsageError("give exactly one of --to-time ISO8601, --to-lsn LSN or --to-latest")
    if to_time:
        try:
            moment = parse_iso(to_time)
        except ValueError:
            raise UsageError(f"--to-time: not an ISO 8601 time: {to_time!r}") from None
        if moment.tzinfo is None:
            raise UsageError(f"--to-time: give a time zone (Z or +hh:mm): {to_time!r}")
        return Target(time=iso(moment))
    if to_lsn:
        try:
            parse_lsn(to_lsn)
        except ValueError as exc:
            raise UsageError(f"--to-lsn: {exc}") from None
        return Target(lsn=to_lsn.upper())
    return Target(latest=True)


def choose_base(storage, cov: Coverage, backup_id: str, target: Target) -> Manifest:
    """The named base backup, or the newest physical one that finished before the target."""
    if backup_id != "latest":
        manifest = resolve(storage, backup_id)
        if manifest.kind != "physical":
            raise UsageError(f"backup {manifest.id} is a logical backup: restore it with `ragops backup restore`")
        return manifest
    bases = cov.bases
    if target.time:
        bases = [m for m in bases if m.physical and parse_iso(m.physical["stop_time"]) <= parse_iso(target.time)]
    elif target.lsn:
        bases = [m for m in bases if m.physical and parse_lsn(m.physical["stop_lsn"]) <= parse_lsn(target.lsn)]
    if not bases:
        raise OperationFailed(f"{target.describe()} is outside the archive's coverage: {cov.describe()}")
    return bases[-1]


def needed_segments(cov: Coverage, base: Manifest, target: Target) -> tuple[list[str], str]:
    """(segments the target needs, in order; the coverage statement). Refuses a target past the
    newest segment and names the first missing one."""
    physical = base.physical or {}
    first = parse_segment(physical["start_wal_file"])[1]
    newest = cov.newest
    if newest is None or newest.segno < parse_segment(physical["stop_wal_file"])[1]:
        if not target.latest:
            raise OperationFailed(f"{target.describe()} is outside the archive's coverage: no WAL archived "
                                  f"after base backup {base.id} ({cov.describe()})")
        return [], cov.describe()
    last = newest.segno
    if target.time:
        moment = parse_iso(target.time)
        if newest.stored_at is not None and moment > newest.stored_at:
            raise OperationFailed(f"{target.describe()} is outside the archive's coverage: {cov.describe()}")
        later = [s for s in cov.segments if s.segno >= first and s.stored_at is not None and s.stored_at >= moment]
        last = later[0].segno if later else newest.segno
    elif target.lsn:
        last = parse_lsn(target.lsn) // (16 * 1024 * 1024)
        if last > newest.segno:
            raise OperationFailed(f"{target.describe()} is outside the archive's coverage: {cov.describe()}")
    by_segno = {s.segno: s for s in cov.segments}
    names = []
    for segno in range(first, last + 1):
        segment = by_segno.get(segno)
        if segment is None:
            raise OperationFailed(f"WAL segment {segment_name(base.physical['timeline'] if base.physical else 1, segno)}"
                                  f" is missing from the archive; it is needed to reach {target.describe()}")
        names.append(segment.name)
    return names, cov.describe()


def fetch_wal(storage, crypter, compressor, name: str, dest: Path) -> None:
    """One segment: sidecar, digest check, decrypt, decompress, written under dest/<name>."""
    import hashlib

    where = storage.describe(object_key(name))
    try:
        sidecar = json.loads(storage.get_bytes(sidecar_key(name)))
        data = b"".join(storage.read_chunks(object_key(name)))
    except (OperationFailed, ValueError) as exc:
        raise OperationFailed(f"WAL segment {name}: {getattr(exc, 'message', exc)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sidecar.get("sha256") or len(data) != sidecar.get("stored_bytes"):
        raise OperationFailed(f"WAL segment {name} is damaged: SHA-256 of {where} does not match its sidecar")
    temp = dest / f".{name}.tmp"
    with open(temp, "wb") as out:
        writer = compressor.decompress(out)
        try:
            crypter.decrypt(io.BytesIO(data), writer, f"WAL segment {name}")
            writer.close()
        except compressor.errors() as exc:
            raise OperationFailed(f"WAL segment {name} is damaged: {exc}") from None
    os.replace(temp, dest / name)


def _check_target_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"--target-dir {path}: exists and is not empty (ragops never overwrites a data directory)")


def _check_key(storage, base: Manifest, crypter) -> None:
    from ragops.backup.checks import check_key, check_object

    for check in (lambda: check_key(storage, base, crypter), lambda: check_object(storage, base, None)):
        result = check()
        if not result.ok:
            raise OperationFailed(f"refusing to restore {base.id}: {result.detail}; nothing was written")


def restore_physical(config, backup_id: str, target: Target, target_dir: str, *, port: int | None = None,
                     keep_running: bool = False, progress: Progress = None, dry_run: bool = False,
                     archive: bool = False):
    """`archive`: keep the source's archive settings (an in-place recovery: the rebuilt primary archives its
    new timeline into the same archive); else archiving is off in the copy."""
    from ragops.backup.catalog import CreatePlan

    started = time.monotonic()
    directory = Path(target_dir).absolute()
    _check_target_dir(directory)
    storage, _copy = storages(config)
    cov = coverage(storage)
    base = choose_base(storage, cov, backup_id, target)
    segments, covered = needed_segments(cov, base, target)
    from ragops.pitr.incremental import apply_links, chain_of

    links = chain_of(storage, base)       # full first; a broken chain stops here, before any byte is written
    compressor, crypter = stages_of(config, base)
    for link in links:
        _check_key(storage, link, crypter)
    if dry_run:
        return CreatePlan(True, [f"checked: {covered}; base backup {' -> '.join(m.id for m in links)} digest and key",
                                 f"would extract {' then '.join(m.id for m in links)} into {directory}",
                                 f"would fetch and verify {len(segments)} WAL segment(s) "
                                 f"({segments[0] if segments else '-'} .. {segments[-1] if segments else '-'})",
                                 f"would replay to {target.describe()} and promote"])
    from ragops.pitr.replay import extract_base, prepare_recovery, replay

    for link in links:
        say(progress, f"restoring base backup {link.id} into {directory}"
                      + (" (incremental)" if link is not links[0] else ""))
        link_compressor, link_crypter = stages_of(config, link)
        extract_base(config, storage, link, link_compressor, link_crypter, directory)
    if len(links) > 1:
        removed = apply_links(directory, base)
        say(progress, f"applied {len(links) - 1} incremental backup(s); {removed} file(s) dropped since the full one")
    wal_dir = directory / WAL_SUBDIR
    wal_dir.mkdir(mode=0o700)
    fetched = _fetch_all(config, storage, crypter, segments, cov, wal_dir, progress)
    prepare_recovery(directory, wal_dir, target, archive=archive, server_version=base.server_version)
    node, recovered_to = replay(config, directory, port, progress, name="primary" if archive else "pitr-restore")
    rpo = None
    if target.time and recovered_to:
        rpo = round((parse_iso(target.time) - parse_iso(recovered_to)).total_seconds(), 3)
    if not keep_running:
        node.stop()
    return PhysicalRestore(base.id, str(directory), target.describe(), fetched, recovered_to, rpo,
                           round(time.monotonic() - started, 2), node.port, keep_running)


def _fetch_all(config, storage, crypter, segments: list[str], cov: Coverage, wal_dir: Path, progress) -> int:
    """The needed segments (any failure stops the restore) and the contiguous ones after them (those
    stop quietly at the first problem: PostgreSQL only reads on if the target lies beyond)."""
    from ragops.backup.compressors import get_compressor

    compressor = get_compressor(None)
    for history in cov.histories:
        fetch_wal(storage, crypter, compressor, history, wal_dir)
    for index, name in enumerate(segments):
        fetch_wal(storage, crypter, compressor, name, wal_dir)
        if index % 20 == 19:
            say(progress, f"fetched {index + 1} of {len(segments)} WAL segments")
    extra = 0
    if segments:
        last = parse_segment(segments[-1])[1]
        for segment in [s for s in cov.segments if s.segno > last]:
            if segment.segno != last + 1 + extra:
                break
            try:
                fetch_wal(storage, crypter, compressor, segment.name, wal_dir)
            except OperationFailed:
                break
            extra += 1
    say(progress, f"fetched {len(segments)} WAL segment(s) needed, {extra} after them")
    return len(segments) + extra


