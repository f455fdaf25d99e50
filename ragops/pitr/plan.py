"""The whole recovery, resolved and checked before anything is touched (`db recover`, `backup physical
restore`, `backup physical verify`):

    timeline path   the target timeline's history file: which timeline holds which LSN range
    base            the named one, or the newest base (or incremental chain) on that path that ended
                    before the target; a base on a timeline the path left behind is never picked
    segments        exactly those from the base's start to the target, each from the path's timeline
    staged          every segment and history file fetched, digest-checked, decrypted into a staging
                    directory, then read by pg_waldump (the same binaries as the server): a segment that
                    does not parse up to what the plan needs is named here, before a node is stopped
    stop point      the last commit at or before T (a recovery_target_time is reached only when replay
                    meets a later commit: with none, PostgreSQL ends with "recovery ended before the
                    configured recovery target was reached"), or the record at --to-lsn, or the last
                    record of the archive; replay stops after that record's LSN, pauses, and ragops
                    checks the reached LSN before it promotes
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ragops.backup.catalog import Manifest, iso, parse_iso, resolve, stages_of
from ragops.backup.pipeline import Progress, say
from ragops.errors import OperationFailed, UsageError
from ragops.pg import pgctl
from ragops.pitr.coverage import Segment, scan_wal
from ragops.pitr.wal import SEGMENT_SIZE, object_key, parse_lsn, parse_segment, segment_name, sidecar_key

RECORD_RE = re.compile(r"rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), "
                       r"prev [0-9A-F]+/[0-9A-F]+, desc: (.*)$")
COMMIT_RE = re.compile(r"^COMMIT(?:_PREPARED)? (?:\d+: )?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass
class Hop:
    """One timeline on the path: it holds [begin, end) (end None: the target timeline, open)."""
    timeline: int
    begin: int
    end: int | None


@dataclass
class Record:
    lsn: int
    end: int
    xid: int
    commit_time: datetime | None


@dataclass
class RecoveryPlan:
    target: object                       # ragops.pitr.restore.Target, as asked
    timeline: int
    path: list[Hop]
    base: Manifest
    chain: list[Manifest]                # full first, then the incremental links
    segments: list[str]
    histories: list[str]
    stop_lsn: str | None = None          # replay stops after the record starting here; None: at consistency
    last_commit_time: str | None = None  # the last transaction the recovery keeps
    last_commit_xid: int | None = None
    note: str = ""
    wal_dir: Path | None = None          # the staged, checked segments (restore_command copies from here)
    warnings: list[str] = field(default_factory=list)

    def describe_path(self) -> str:
        return " -> ".join(f"{h.timeline}" + (f" (to {lsn_text(h.end)})" if h.end is not None else "")
                           for h in self.path)

    def lines(self) -> list[str]:
        kept = (f"last transaction kept: xid {self.last_commit_xid} committed {self.last_commit_time}"
                if self.last_commit_time else "no transaction after the base backup's end is replayed")
        physical = self.base.physical or {}
        return [f"base backup {' -> '.join(m.id for m in self.chain)} (timeline {physical['timeline']}, "
                f"ended {physical['stop_time']})",
                f"timeline path {self.describe_path()}; recovering onto timeline {self.timeline}",
                f"WAL segments {self.segments[0] if self.segments else '-'} .. {self.segments[-1] if self.segments else '-'}"
                f" ({len(self.segments)}), each digest-checked, decrypted and read by pg_waldump",
                f"replay stops after LSN {self.stop_lsn or physical['stop_lsn']}; {kept}",
                *([self.note] if self.note else [])]

    def cleanup(self) -> None:
        if self.wal_dir is not None:
            shutil.rmtree(self.wal_dir, ignore_errors=True)
            self.wal_dir = None


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file: [(parent timeline, LSN where the next one branched off)], oldest first."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            entries.append((int(fields[0]), parse_lsn(fields[1])))
    return entries


def timeline_path(timeline: int, history: list[tuple[int, int]]) -> list[Hop]:
    hops, begin = [], 0
    for parent, switch in history:
        hops.append(Hop(parent, begin, switch))
        begin = switch
    return [*hops, Hop(timeline, begin, None)]


def timeline_of(path: list[Hop], segno: int) -> int:
    """The timeline whose file holds segment `segno` on this path: the newest that began at or before it
    (the segment of a switch is the new timeline's: it holds the old one's records up to the switch)."""
    return [h for h in path if h.begin // SEGMENT_SIZE <= segno][-1].timeline


def on_path(path: list[Hop], manifest: Manifest) -> bool:
    physical = manifest.physical or {}
    start, stop = parse_lsn(physical["start_lsn"]), parse_lsn(physical["stop_lsn"])
    for hop in path:
        if hop.timeline == int(physical["timeline"]):
            return hop.begin <= start and (hop.end is None or stop <= hop.end)
    return False


def parse_waldump(text: str) -> list[Record]:
    records = []
    for line in text.splitlines():
        match = RECORD_RE.search(line)
        if not match:
            continue
        rmgr, total, xid, lsn, desc = match.groups()
        commit = COMMIT_RE.match(desc) if rmgr == "Transaction" else None
        when = parse_iso(commit.group(1).replace(" ", "T") + "+00:00") if commit else None
        start = parse_lsn(lsn)
        records.append(Record(start, start + int(total), int(xid), when))
    return records


def resolve_stop(plan: RecoveryPlan, records: list[Record]) -> None:
    """Where replay stops, from the records between the base's start and the end of the staged WAL."""
    physical = plan.base.physical or {}
    consistent = parse_lsn(physical["stop_lsn"])
    target = plan.target
    usable = [r for r in records if r.lsn >= consistent]
    commits = [r for r in usable if r.commit_time is not None]
    if target.time:   # type: ignore[attr-defined]
        moment = parse_iso(target.time)   # type: ignore[attr-defined]
        kept = [r for r in commits if r.commit_time <= moment]   # type: ignore[operator]
        if not kept:
            plan.note = f"no commit between the base backup's end and {target.time}: the base's state is the target"  # type: ignore[attr-defined]
            return
        last = kept[-1]
        if last is (commits[-1] if commits else None):
            plan.note = (f"no commit after {target.time} in the archive: recovering to the last commit "  # type: ignore[attr-defined]
                         f"({iso(last.commit_time)}), the same state")   # type: ignore[arg-type]
    elif target.lsn:   # type: ignore[attr-defined]
        wanted = parse_lsn(target.lsn)   # type: ignore[attr-defined]
        if wanted < consistent:
            raise UsageError(f"--to-lsn {target.lsn} is before base backup {plan.base.id} became consistent "  # type: ignore[attr-defined]
                             f"({physical['stop_lsn']}): name an earlier one with --from")
        after = [r for r in records if r.lsn >= wanted]
        if not after:
            end = lsn_text(records[-1].end) if records else physical["stop_lsn"]
            raise OperationFailed(f"--to-lsn {target.lsn} is beyond the archive's last WAL record (ends at {end})")  # type: ignore[attr-defined]
        last = after[0]
    else:
        if not usable:
            plan.note = "no WAL record after the base backup's end: the base's state is the end of the archive"
            return
        last = usable[-1]
    plan.stop_lsn = lsn_text(last.lsn)
    kept_commits = [r for r in commits if r.lsn <= last.lsn]
    if kept_commits:
        plan.last_commit_time = iso(kept_commits[-1].commit_time)   # type: ignore[arg-type]
        plan.last_commit_xid = kept_commits[-1].xid


def newest_timeline(segments: list[Segment], histories: list[str]) -> int:
    numbers = [s.timeline for s in segments] + [int(h[:8], 16) for h in histories]
    return max(numbers) if numbers else 1


def _fetch_text(storage, crypter, name: str, scratch: Path) -> str:
    from ragops.backup.compressors import get_compressor
    fetch_wal(storage, crypter, get_compressor(None), name, scratch)
    return (scratch / name).read_text()


def choose(storage, bases: list[Manifest], path: list[Hop], target, backup_id: str, newest: datetime | None = None) -> Manifest:
    if backup_id != "latest":
        manifest = resolve(storage, backup_id)
        if manifest.kind != "physical" or not manifest.physical:
            raise UsageError(f"backup {manifest.id} is a logical backup: restore it with `ragops backup restore`")
        if not on_path(path, manifest):
            raise UsageError(f"--from {manifest.id}: taken on timeline {manifest.physical['timeline']}, which is "
                             f"not on the path to the target ({' -> '.join(str(h.timeline) for h in path)})")
        return manifest
    candidates = [m for m in bases if on_path(path, m)]
    if target.time:
        candidates = [m for m in candidates if parse_iso(m.physical["stop_time"]) <= parse_iso(target.time)]  # type: ignore[index]
    elif target.lsn:
        candidates = [m for m in candidates if parse_lsn(m.physical["stop_lsn"]) <= parse_lsn(target.lsn)]  # type: ignore[index]
    if not candidates:
        mine = [m for m in bases if on_path(path, m)]
        covers = (f"the archive covers {mine[0].physical['stop_time']} to {iso(newest) if newest else '-'}"   # type: ignore[index]
                  if mine else "no base backup on it")
        raise OperationFailed(f"{target.describe()} is outside the archive's coverage on the path to timeline "
                              f"{path[-1].timeline} ({' -> '.join(str(h.timeline) for h in path)}): {covers}")
    return candidates[-1]


def plan_recovery(config, storage, target, *, backup_id: str = "latest", timeline: int | None = None,
                  progress: Progress = None, stage: bool = True) -> RecoveryPlan:
    """The plan, every object it needs checked. The caller owns plan.wal_dir (plan.cleanup())."""
    from ragops.backup.catalog import manifests
    from ragops.backup.crypters import get_crypter

    segments, histories = scan_wal(storage)
    crypter = get_crypter(config, generate=False)
    wanted_tl = timeline or newest_timeline(segments, histories)
    scratch: Path | None = _scratch_dir(config)
    assert scratch is not None
    try:
        history: list[tuple[int, int]] = []
        if wanted_tl > 1:
            name = f"{wanted_tl:08X}.history"
            if name not in histories:
                raise OperationFailed(f"timeline {wanted_tl}'s history file {name} is missing from the archive: "
                                      "which base backups and segments lead to it is unknown "
                                      "(give --timeline with an earlier one)")
            history = parse_history(_fetch_text(storage, crypter, name, scratch))
        path = timeline_path(wanted_tl, history)
        bases = [m for m, _v in manifests(storage) if m.kind == "physical" and m.physical]
        stored = [seg.stored_at for seg in segments if seg.stored_at is not None]
        base = choose(storage, bases, path, target, backup_id, max(stored) if stored else None)
        from ragops.pitr.incremental import chain_of

        chain = chain_of(storage, base)
        plan = RecoveryPlan(target, wanted_tl, path, base, chain, [],
                            [f"{h.timeline:08X}.history" for h in path if h.timeline > 1])
        plan.segments = _segment_list(plan, segments, lambda name: _archived_at(storage, name))
        for link in chain:
            _check_link(config, storage, link)
        if stage:
            plan.wal_dir = scratch
            _stage(config, storage, crypter, plan, progress)
            scratch = None   # the plan owns it now
        return plan
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _scratch_dir(config) -> Path:
    home = pgctl.server_home(config, create=True) or config.state_dir
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pitr-wal-", dir=home))
    scratch.chmod(0o755)   # ours: the server account's restore_command copies from it
    return scratch


def _archived_at(storage, name: str) -> datetime | None:
    """When PostgreSQL handed the segment to the archive (its sidecar): every record in it is older."""
    from ragops.backup.catalog import safe_json
    from ragops.pitr.wal import sidecar_key

    sidecar = safe_json(storage, sidecar_key(name)) or {}
    try:
        return parse_iso(sidecar["archived_at"])
    except (KeyError, TypeError, ValueError):
        return None


def _first_closed_after(mine: list[Segment], moment: datetime, archived_at) -> int | None:
    """The first segment closed at or after `moment` (a binary search over the sidecars: archive order is
    close order). Its successors hold only later commits, so the segments up to it are enough for T."""
    low, high, found = 0, len(mine) - 1, None
    while low <= high:
        middle = (low + high) // 2
        when = archived_at(mine[middle].name) or mine[middle].stored_at
        if when is None or when >= moment:
            found, high = mine[middle].segno, middle - 1
        else:
            low = middle + 1
    return found


def _segment_list(plan: RecoveryPlan, segments: list[Segment], archived_at=lambda name: None) -> list[str]:
    physical = plan.base.physical or {}
    first = parse_lsn(physical["start_lsn"]) // SEGMENT_SIZE
    present = {s.name: s for s in segments}
    mine = [s for s in segments if s.segno >= first and s.name == segment_name(timeline_of(plan.path, s.segno), s.segno)]
    if not mine:
        raise OperationFailed(f"{plan.target.describe()} is outside the archive's coverage: no WAL archived "  # type: ignore[attr-defined]
                              f"on timeline {plan.timeline}'s path since base backup {plan.base.id}")
    last = max(s.segno for s in mine)
    target = plan.target
    if target.time:   # type: ignore[attr-defined]
        moment = parse_iso(target.time)   # type: ignore[attr-defined]
        newest = max(mine, key=lambda s: s.segno)
        if newest.stored_at is not None and moment > newest.stored_at:
            raise OperationFailed(f"{target.describe()} is outside the archive's coverage: the newest segment on "  # type: ignore[attr-defined]
                                  f"timeline {plan.timeline}'s path ({newest.name}) was stored at {iso(newest.stored_at)}")
        closed = _first_closed_after(sorted(mine, key=lambda s: s.segno), moment, archived_at)
        last = closed if closed is not None else last
    elif target.lsn:   # type: ignore[attr-defined]
        last = min(last, parse_lsn(target.lsn) // SEGMENT_SIZE + 1)   # type: ignore[attr-defined]
        if parse_lsn(target.lsn) // SEGMENT_SIZE > max(s.segno for s in mine):   # type: ignore[attr-defined]
            raise OperationFailed(f"{target.describe()} is outside the archive's coverage: the newest segment on "  # type: ignore[attr-defined]
                                  f"timeline {plan.timeline}'s path is {max(mine, key=lambda s: s.segno).name}")
    names = []
    for segno in range(first, last + 1):
        tl = timeline_of(plan.path, segno)
        name = segment_name(tl, segno)
        if name not in present:
            raise OperationFailed(f"WAL segment {name} (timeline {tl}, LSN {lsn_text(segno * SEGMENT_SIZE)} to "
                                  f"{lsn_text((segno + 1) * SEGMENT_SIZE)}) is missing from the archive; it is needed "
                                  f"to reach {target.describe()} from base backup {plan.base.id}")  # type: ignore[attr-defined]
        names.append(name)
    return names


def _check_link(config, storage, link: Manifest) -> None:
    from ragops.backup.checks import check_key, check_object

    _compressor, crypter = stages_of(config, link)
    for check in (lambda: check_key(storage, link, crypter), lambda: check_object(storage, link, None)):
        result = check()
        if not result.ok:
            raise OperationFailed(f"refusing to restore {link.id}: {result.detail}; nothing was changed")


def _stage(config, storage, crypter, plan: RecoveryPlan, progress: Progress) -> None:
    from ragops.backup.compressors import get_compressor
    assert plan.wal_dir is not None
    compressor = get_compressor(None)
    for name in plan.histories:
        fetch_wal(storage, crypter, compressor, name, plan.wal_dir)
    for index, name in enumerate(plan.segments):
        fetch_wal(storage, crypter, compressor, name, plan.wal_dir)
        if index % 20 == 19:
            say(progress, f"fetched and checked {index + 1} of {len(plan.segments)} WAL segments")
    say(progress, f"fetched and checked {len(plan.segments)} WAL segment(s); reading them with pg_waldump")
    resolve_stop(plan, read_records(config, plan))
    pgctl.give_to_server_account(plan.wal_dir)


def read_records(config, plan: RecoveryPlan) -> list[Record]:
    """Every record from the base's start to the end of the staged segments, hop by hop (pg_waldump reads
    one timeline: each hop sees the path's files under its own timeline's names). A hop that stops
    before its end, or a last hop that stops before the last staged segment, names the damaged segment."""
    assert plan.wal_dir is not None
    start = parse_lsn(plan.base.physical["start_lsn"])   # type: ignore[index]
    last_segno = parse_segment(plan.segments[-1])[1] if plan.segments else 0
    waldump = pgctl.Node("pg_waldump", plan.wal_dir, 0, plan.wal_dir / "x.log", bin=config.database.bin_dir,
                         home=pgctl.server_home(config)).pg("pg_waldump")
    records: list[Record] = []
    for hop in plan.path:
        if hop.end is not None and hop.end <= start:
            continue
        begin = max(start, hop.begin)
        view = plan.wal_dir / f"view-{hop.timeline:08X}"
        view.mkdir(exist_ok=True)
        for name in plan.segments:
            link = view / (f"{hop.timeline:08X}" + name[8:])
            if not link.exists():
                os.symlink(plan.wal_dir / name, link)
        args = [waldump, "-p", str(view), "-t", str(hop.timeline),
                "-s", lsn_text(begin)]
        if hop.end is not None:
            args += ["-e", lsn_text(hop.end)]
        pgctl.give_to_server_account(plan.wal_dir)
        done = pgctl.run_pg(args, env={"TZ": "UTC", "LC_ALL": "C"}, check=False, timeout=600)
        found = [r for r in parse_waldump(done.stdout) if hop.end is None or r.lsn < hop.end]
        records += found
        reached = found[-1].end if found else begin
        error = (done.stderr.strip().splitlines() or [""])[-1].removeprefix("pg_waldump: error: ")
        if hop.end is not None and done.returncode != 0 and reached < hop.end:
            raise _damaged(plan, reached, hop.timeline, error)
        if hop.end is None and (reached - 1) // SEGMENT_SIZE < last_segno:
            raise _damaged(plan, reached, hop.timeline, error)
    return records


def _damaged(plan: RecoveryPlan, reached: int, timeline: int, error: str) -> OperationFailed:
    where = re.findall(r" at ([0-9A-F]+/[0-9A-F]+)", error)   # the inner message names the bad position
    segno = max(reached, parse_lsn(where[-1]) if where else 0) // SEGMENT_SIZE
    name = next((n for n in plan.segments if parse_segment(n)[1] == segno),
                segment_name(timeline, segno))
    later = len(plan.segments) - 1 - plan.segments.index(name) if name in plan.segments else 0
    return OperationFailed(f"WAL segment {name} (timeline {int(name[:8], 16)}) is damaged inside: the readable records "
                           f"end at {lsn_text(reached)} ({error or 'pg_waldump stopped'}), {later} later segment(s) cannot be "
                           f"replayed; nothing was changed")


def fetch_wal(storage, crypter, compressor, name: str, dest: Path) -> None:
    """One segment: sidecar, digest check, decrypt, decompress, written under dest/<name>."""
    import hashlib

    where = storage.describe(object_key(name))
    what = name if name.endswith(".history") else f"{name} (timeline {int(name[:8], 16)})"
    try:
        sidecar = json.loads(storage.get_bytes(sidecar_key(name)))
        data = b"".join(storage.read_chunks(object_key(name)))
    except (OperationFailed, ValueError) as exc:
        raise OperationFailed(f"WAL file {what}: {getattr(exc, 'message', exc)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sidecar.get("sha256") or len(data) != sidecar.get("stored_bytes"):
        raise OperationFailed(f"WAL file {what} is damaged: SHA-256 of {where} does not match its sidecar")
    temp = dest / f".{name}.tmp"
    with open(temp, "wb") as out:
        writer = compressor.decompress(out)
        try:
            crypter.decrypt(io.BytesIO(data), writer, f"WAL segment {name}")
            writer.close()
        except compressor.errors() as exc:
            raise OperationFailed(f"WAL file {what} is damaged: {exc}") from None
    os.replace(temp, dest / name)
