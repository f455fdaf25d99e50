"""What the WAL archive holds: committed segments by timeline, gaps, the newest segment, and the
span of time a restore can reach (from the oldest physical base backup's stop to the newest segment).

A segment exists once its sidecar (wal/<tl>/<segment>.json) is stored; the data object alone is
an unfinished upload. Times come from the listing (when a segment was stored), which is never
earlier than the WAL inside it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

from ragops.backup.catalog import Manifest, iso, manifests, now_utc, parse_iso
from ragops.errors import GateFailed
from ragops.fsutil import write_atomic
from ragops.pitr.wal import SEGMENT_RE, SUFFIX, WAL_DIR, parse_segment, segment_name


@dataclass
class Segment:
    name: str
    timeline: int
    segno: int
    stored_at: datetime | None


@dataclass
class Coverage:
    segments: list[Segment]                      # committed segments, in order
    histories: list[str]                         # timeline history files (00000002.history)
    gaps: list[str] = field(default_factory=list)  # missing segment names between the first and the last
    bases: list[Manifest] = field(default_factory=list)   # physical base backups, oldest first

    @property
    def newest(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def oldest_recoverable(self) -> str | None:
        return self.bases[0].physical["stop_time"] if self.bases and self.bases[0].physical else None

    def newest_time(self) -> datetime | None:
        return self.newest.stored_at if self.newest else None

    def describe(self) -> str:
        if not self.bases:
            return "no physical base backup"
        newest = self.newest_time()
        return (f"the archive covers {self.oldest_recoverable()} to "
                f"{iso(newest) if newest else self.bases[-1].physical['stop_time']}")   # type: ignore[index]


def scan_wal(storage) -> tuple[list[Segment], list[str]]:
    segments = []
    histories = []
    listing = storage.list(f"{WAL_DIR}/")
    data = {obj.key.rsplit("/", 1)[-1][:-len(SUFFIX)] for obj in listing if obj.key.endswith(SUFFIX)}
    for obj in listing:
        name = obj.key.rsplit("/", 1)[-1]
        if not name.endswith(".json") or name[:-5] not in data:   # both the object and its sidecar
            continue
        stem = name[:-5]
        if SEGMENT_RE.match(stem):
            timeline, segno = parse_segment(stem)
            segments.append(Segment(stem, timeline, segno, obj.modified))
        elif stem.endswith(".history"):
            histories.append(stem)
    segments.sort(key=lambda s: (s.segno, s.timeline))
    return segments, sorted(histories)


def find_gaps(segments: list[Segment]) -> list[str]:
    """Missing segment numbers between consecutive archived ones (a timeline switch continues the
    count: the new timeline's first segment follows the old one's last)."""
    gaps = []
    for before, after in itertools.pairwise(segments):
        for segno in range(before.segno + 1, after.segno):
            gaps.append(segment_name(after.timeline, segno))
    return gaps


def newest_chain(segments: list[Segment]) -> list[Segment]:
    """The history that leads to the newest timeline: its segments, and an older timeline's only
    below the point where a newer one branched off (what the old timeline wrote after that point
    was left behind by a recovery)."""
    kept: list[Segment] = []
    floor = None
    for timeline in sorted({s.timeline for s in segments}, reverse=True):
        mine = [s for s in segments if s.timeline == timeline and (floor is None or s.segno < floor)]
        kept += mine
        if mine:
            floor = min(s.segno for s in mine)
    return sorted(kept, key=lambda s: s.segno)


def coverage(storage) -> Coverage:
    segments, histories = scan_wal(storage)
    ordered = newest_chain(segments)
    bases = [m for m, _v in manifests(storage) if m.kind == "physical" and m.physical]
    return Coverage(ordered, histories, find_gaps(ordered), bases)


@dataclass
class ArchiveCheck:
    ok: bool
    segments: int
    newest_segment: str | None
    newest_age_seconds: float | None
    max_lag_seconds: float
    gaps: list[str]
    oldest_recoverable_time: str | None
    base_backups: int
    metrics_file: str | None
    problems: list[str]


def check_archive(config, metrics_file: str | None = None, now: datetime | None = None) -> ArchiveCheck:
    """Archive health: newest segment age, gaps, oldest recoverable time. GateFailed (exit 3) when the
    newest segment is older than backups.max_wal_lag or the sequence has a gap."""
    from ragops.backup.catalog import storages

    storage, _copy = storages(config)
    now = now or now_utc()
    cov = coverage(storage)
    newest = cov.newest
    age = (now - newest.stored_at).total_seconds() if newest and newest.stored_at else None
    max_lag = config.backups.max_wal_lag
    problems = []
    if newest is None:
        problems.append(f"no WAL segment in {storage.url}")
    elif age is not None and age > max_lag:
        problems.append(f"newest WAL segment {newest.name} is {age:.0f}s old (max {max_lag:.0f}s)")
    if cov.gaps:
        problems.append(f"{len(cov.gaps)} segment(s) missing from the archive, first {cov.gaps[0]}")
    from ragops.pitr.writeonce import conflict

    clash = conflict(config)
    if clash:
        problems.append(f"the shipper stopped since {clash.get('since')}: {clash.get('message')}")
    result = ArchiveCheck(not problems, len(cov.segments), newest.name if newest else None,
                          round(age, 1) if age is not None else None, max_lag, cov.gaps[:100],
                          cov.oldest_recoverable(), len(cov.bases),
                          str(config.resolve_path(metrics_file)) if metrics_file else None, problems)
    if metrics_file:
        _write_metrics(config, result, newest)
    if problems:
        raise GateFailed("WAL archive: " + "; ".join(problems))
    return result


def _write_metrics(config, result: ArchiveCheck, newest: Segment | None) -> None:
    labels = f'environment="{config.env_name}",project="{config.project}"'
    lines = []

    def metric(name: str, help_text: str, value) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{labels}}} {value}"])

    if newest is not None and newest.stored_at is not None:
        metric("ragops_wal_last_archived_timestamp_seconds", "When the newest WAL segment was stored.",
               f"{newest.stored_at.timestamp():.3f}")
        metric("ragops_wal_archive_lag_seconds", "Age of the newest archived WAL segment.", result.newest_age_seconds)
    metric("ragops_wal_segments", "WAL segments in the archive.", result.segments)
    metric("ragops_wal_gaps", "Segments missing between the first and the newest.", len(result.gaps))
    if result.oldest_recoverable_time:
        metric("ragops_pitr_oldest_recoverable_timestamp_seconds", "The earliest moment a restore can reach.",
               f"{parse_iso(result.oldest_recoverable_time).timestamp():.3f}")
    metric("ragops_wal_conflict", "1 if the shipper stopped at a file the archive holds with other content.",
           int(any("different content" in p for p in result.problems)))
    metric("ragops_wal_check_ok", "1 if the archive is fresh and has no gap.", int(result.ok))
    path = config.resolve_path(result.metrics_file)
    write_atomic(path, "\n".join(lines) + "\n", mode=0o644)   # node_exporter's textfile collector reads it
