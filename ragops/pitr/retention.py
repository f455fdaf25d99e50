"""WAL retention: keep every segment the oldest kept physical base backup needs, and nothing older.

Without a kept physical base backup nothing is deleted (the archive is all there is). Timeline
history files are always kept (they are tiny and every later restore reads them).
"""
from __future__ import annotations

from ragops.pitr.wal import SEGMENT_RE, SUFFIX, WAL_DIR, parse_segment


def expired_wal(store, kept_bases: list) -> list[tuple[str, str]]:
    """(object key, reason) of WAL objects older than the first segment of the oldest kept base backup;
    the sidecar of a segment comes before its data object (from then on the segment does not exist)."""
    starts = [parse_segment(m.physical["start_wal_file"])[1] for m in kept_bases if m.physical]
    if not starts:
        return []
    floor = min(starts)
    oldest = min((m for m in kept_bases if m.physical), key=lambda m: parse_segment(m.physical["start_wal_file"])[1])
    reason = f"older than {oldest.physical['start_wal_file']}, the first segment base backup {oldest.id} needs"
    found = []
    for obj in store.list(f"{WAL_DIR}/"):
        name = obj.key.rsplit("/", 1)[-1]
        stem = name[:-5] if name.endswith(".json") else name[:-len(SUFFIX)] if name.endswith(SUFFIX) else ""
        if SEGMENT_RE.match(stem) and parse_segment(stem)[1] < floor:
            found.append((0 if name.endswith(".json") else 1, obj.key))
    return [(key, reason) for _order, key in sorted(found)]
