"""`backup physical restore`: a data directory at a moment in time.

    checks (no byte written before they pass): the target directory and port, then the whole plan
                  (ragops/pitr/plan.py): timeline path, base or chain (key, digest), every segment
                  fetched, digest-checked, decrypted into a staging directory and read by pg_waldump
    base backup:  storage -> age -> zstd -> tar -x  into DIR
    replay:       restore_command = cp from the staging directory (no interpreter per segment),
                  recovery_target_lsn = the plan's stop point, pause; the reached LSN checked; promote

Prefetching is what keeps the per-segment cost at one `cp`: ragops does the storage, the digest and
the decryption in one process, PostgreSQL copies files.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ragops.backup.catalog import iso, parse_iso, storages
from ragops.backup.pipeline import Progress
from ragops.errors import OperationFailed, UsageError
from ragops.pitr.wal import parse_lsn


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
    stop_lsn: str | None = None        # the plan's stop point; replay reached it (checked before the promotion)
    timeline: int | None = None        # the timeline the copy was recovered onto (its path's end)
    note: str = ""                     # e.g. no commit after the target: recovered to the last one


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
        if to_lsn != to_lsn.strip():   # a pasted value with a trailing CR would reach PostgreSQL's parser
            raise UsageError(f"--to-lsn: not an LSN: {to_lsn!r} (remove the surrounding whitespace)")
        try:
            parse_lsn(to_lsn)
        except ValueError as exc:
            raise UsageError(f"--to-lsn: {exc}") from None
        return Target(lsn=to_lsn.upper())
    return Target(latest=True)


def check_target_dir(path: Path) -> None:
    """Before any byte is written: a new or empty directory, reachable through directories."""
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--target-dir {path}: {parent} is a file, not a directory")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"--target-dir {path}: exists and is not empty (ragops never overwrites a data directory)")


def check_port_free(port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(f"--port {port}: already in use on 127.0.0.1 (nothing was written)") from None


def restore_physical(config, backup_id: str, target: Target, target_dir: str, *, port: int | None = None,
                     keep_running: bool = False, progress: Progress = None, dry_run: bool = False,
                     archive: bool = False, timeline: int | None = None):
    """`archive`: keep the source's archive settings (an in-place recovery: the rebuilt primary archives its
    new timeline into the same archive); else archiving is off in the copy, for good."""
    from ragops.backup.catalog import CreatePlan
    from ragops.pitr.plan import plan_recovery

    started = time.monotonic()
    directory = Path(target_dir).absolute()
    check_target_dir(directory)
    if port is not None:
        check_port_free(port)
    storage, _copy = storages(config)
    plan = plan_recovery(config, storage, target, backup_id=backup_id, timeline=timeline, progress=progress)
    try:
        if dry_run:
            return CreatePlan(True, [*plan.lines(), f"would extract {' then '.join(m.id for m in plan.chain)} into "
                                     f"{directory}", "would replay to the stop point, pause, check the reached LSN "
                                     "and promote (archiving off in the copy)"])
        created = not directory.exists()
        from ragops.pitr.replay import lay_down, replay

        try:
            lay_down(config, storage, plan, directory, archive=archive, progress=progress)
            node, recovered_to = replay(config, directory, port, progress,
                                        name="primary" if archive else "pitr-restore", plan=plan)
        except OperationFailed as exc:
            if created and directory.exists():   # ours: moved aside so a retry finds the target free
                aside = set_aside(directory, "failed-attempt")
                raise OperationFailed(f"{exc.message}; the half-restored copy was moved to {aside}") from None
            raise
    finally:
        plan.cleanup()
    rpo = None
    if target.time and recovered_to:
        rpo = round((parse_iso(target.time) - parse_iso(recovered_to)).total_seconds(), 3)
    if not keep_running:
        node.stop()
    return PhysicalRestore(plan.base.id, str(directory), target.describe(), len(plan.segments), recovered_to, rpo,
                           round(time.monotonic() - started, 2), node.port, keep_running,
                           plan.stop_lsn, plan.timeline, plan.note)


def set_aside(directory: Path, what: str) -> str:
    """<dir>.<what>-<stamp>: `original` data ragops replaced, or a `failed-attempt` it wrote."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = directory.with_name(f"{directory.name}.{what}-{stamp}")
    os.rename(directory, aside)
    return str(aside)


