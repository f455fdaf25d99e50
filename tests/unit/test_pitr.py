"""Point-in-time recovery: WAL names, coverage and gaps, targets, archive settings (no server)."""
from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ragops.errors import GateFailed, OperationFailed, UsageError
from ragops.pitr import coverage as cov_mod
from ragops.pitr.coverage import Coverage, Segment, find_gaps
from ragops.pitr.replay import recovered_time
from ragops.pitr.restore import parse_target
from ragops.pitr.wal import object_key, parse_lsn, parse_segment, segment_name, segment_of_lsn, sidecar_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_segment_names_round_trip_and_lsn():
    assert segment_name(1, 3) == "000000010000000000000003"
    assert segment_name(2, 0x100 + 5) == "000000020000000100000005"
    assert parse_segment("000000020000000100000005") == (2, 0x105)
    assert parse_lsn("0/3000028") == 0x3000028
    assert parse_lsn("1/A") == (1 << 32) | 10
    assert segment_of_lsn(1, parse_lsn("0/3000028")) == "000000010000000000000003"
    with pytest.raises(ValueError):
        parse_lsn("nope")
    assert object_key("000000010000000000000003") == "wal/00000001/000000010000000000000003.zst.age"
    assert sidecar_key("00000002.history") == "wal/00000002/00000002.history.json"


def _segments(*segnos: int, timeline: int = 1) -> list[Segment]:
    return [Segment(segment_name(timeline, n), timeline, n, T0 + timedelta(seconds=10 * n)) for n in segnos]


def test_the_newest_timeline_wins_after_its_branch_point():
    from ragops.pitr.coverage import newest_chain

    chain = newest_chain(_segments(1, 2, 3, 4, 5) + _segments(3, 4, timeline=2))
    assert [(s.timeline, s.segno) for s in chain] == [(1, 1), (1, 2), (2, 3), (2, 4)]


def test_gaps_are_named():
    assert find_gaps(_segments(1, 2, 3)) == []
    assert find_gaps(_segments(1, 2, 5)) == [segment_name(1, 3), segment_name(1, 4)]


class _Base:
    kind = "physical"
    server_version = "16"

    def __init__(self, id="20260101T000000.000Z", timeline=1, start="0/2000028", stop="0/2000100",
                 stop_time="2026-01-01T00:00:20Z"):
        self.id = id
        self.physical = {"start_wal_file": segment_name(timeline, parse_lsn(start) >> 24), "timeline": timeline,
                         "stop_wal_file": segment_name(timeline, parse_lsn(stop) >> 24), "start_lsn": start,
                         "stop_lsn": stop, "stop_time": stop_time}


def _plan(target, path=None, base=None):
    from ragops.pitr.plan import Hop, RecoveryPlan

    base = base or _Base()
    return RecoveryPlan(target, (path or [Hop(1, 0, None)])[-1].timeline, path or [Hop(1, 0, None)], base, [base], [], [])


def test_segment_list_stops_at_the_target_and_names_a_missing_one():
    from ragops.pitr.plan import _segment_list

    segments = _segments(2, 3, 4, 5, 6)     # stored at 20, 30, ... 60 s
    assert _segment_list(_plan(parse_target("2026-01-01T00:00:35Z", None, False)), segments) == \
        [segment_name(1, n) for n in (2, 3, 4)]      # the first stored after the target: 4 (40 s)
    assert _segment_list(_plan(parse_target(None, None, True)), segments)[-1] == segment_name(1, 6)
    with pytest.raises(OperationFailed, match=r"outside the archive's coverage.*stored at"):
        _segment_list(_plan(parse_target("2026-01-01T01:00:00Z", None, False)), segments)
    with pytest.raises(OperationFailed, match=f"{segment_name(1, 4)} \\(timeline 1, LSN 0/4000000 to 0/5000000\\) is missing"):
        _segment_list(_plan(parse_target(None, None, True)), _segments(2, 3, 5, 6))


def test_timeline_path_from_history_files_picks_segments_and_bases_on_the_path():
    from ragops.pitr.plan import _segment_list, choose, on_path, parse_history, timeline_of, timeline_path

    history = parse_history("1\t0/4000100\tbefore 2026-01-01 00:00:35+00\n\n2\t0/6000200\tno recovery target\n")
    assert history == [(1, 0x4000100), (2, 0x6000200)]
    path = timeline_path(3, history)
    assert [timeline_of(path, n) for n in (3, 4, 5, 6, 7)] == [1, 2, 2, 3, 3]
    old = _Base("old", 1, "0/2000028", "0/2000100", "2026-01-01T00:00:20Z")
    # taken on timeline 1 after timeline 2 branched off: a history the path left behind
    abandoned = _Base("abandoned", 1, "0/5000028", "0/5000100", "2026-01-01T00:00:50Z")
    on_two = _Base("on-two", 2, "0/5000028", "0/5000100", "2026-01-01T00:00:51Z")
    assert on_path(path, old) and not on_path(path, abandoned) and on_path(path, on_two)
    target = parse_target("2026-01-01T00:00:55Z", None, False)
    assert choose(None, [old, on_two, abandoned], path, target, "latest").id == "on-two"
    assert choose(None, [old, abandoned], path, target, "latest").id == "old"
    # the segments: each from the path's timeline; a switch segment is the new timeline's
    archive = _segments(2, 3, 4, 5, 6) + _segments(4, 5, 6, timeline=2) + _segments(6, 7, 8, timeline=3)
    names = _segment_list(_plan(parse_target(None, None, True), path, old), archive)
    assert names == [segment_name(1, 2), segment_name(1, 3), segment_name(2, 4), segment_name(2, 5),
                     segment_name(3, 6), segment_name(3, 7), segment_name(3, 8)]


WALDUMP = """rmgr: Heap len (rec/tot): 59/ 59, tx: 740, lsn: 0/03000060, prev 0/03000028, desc: INSERT off: 2
rmgr: Transaction len (rec/tot): 34/ 34, tx: 740, lsn: 0/030000A0, prev 0/03000060, desc: COMMIT 2026-01-01 00:00:30.250000 UTC
rmgr: Standby len (rec/tot): 50/ 50, tx: 0, lsn: 0/030000C8, prev 0/030000A0, desc: RUNNING_XACTS nextXid 741
rmgr: Transaction len (rec/tot): 34/ 34, tx: 741, lsn: 0/03000100, prev 0/030000C8, desc: COMMIT 2026-01-01 00:00:40.000001 UTC
rmgr: XLOG len (rec/tot): 24/ 24, tx: 0, lsn: 0/03000128, prev 0/03000100, desc: SWITCH
"""


def test_the_stop_point_is_the_last_commit_at_or_before_the_target():
    from ragops.pitr.plan import parse_waldump, resolve_stop

    records = parse_waldump(WALDUMP)
    assert [r.xid for r in records if r.commit_time] == [740, 741]
    plan = _plan(parse_target("2026-01-01T00:00:35Z", None, False))
    resolve_stop(plan, records)
    assert (plan.stop_lsn, plan.last_commit_xid, plan.note) == ("0/30000A0", 740, "")
    # after the last commit (an idle database, the same T twice): the last commit, said so
    plan = _plan(parse_target("2026-01-01T00:09:00Z", None, False))
    resolve_stop(plan, records)
    assert plan.stop_lsn == "0/3000100" and plan.last_commit_time == "2026-01-01T00:00:40.000001Z"
    assert "no commit after" in plan.note
    # before any commit after the base's end: the base's consistent state
    plan = _plan(parse_target("2026-01-01T00:00:21Z", None, False))
    resolve_stop(plan, records)
    assert plan.stop_lsn is None and "base's state" in plan.note
    plan = _plan(parse_target(None, None, True))
    resolve_stop(plan, records)
    assert plan.stop_lsn == "0/3000128" and plan.last_commit_xid == 741
    plan = _plan(parse_target(None, "0/30000B0", False))
    resolve_stop(plan, records)
    assert plan.stop_lsn == "0/30000C8"
    with pytest.raises(OperationFailed, match="beyond the archive's last WAL record"):
        resolve_stop(_plan(parse_target(None, "0/4000000", False)), records)
    with pytest.raises(UsageError, match="before base backup"):
        resolve_stop(_plan(parse_target(None, "0/1000000", False)), records)


def test_targets_are_validated():
    with pytest.raises(UsageError, match="exactly one"):
        parse_target(None, None, False)
    with pytest.raises(UsageError, match="exactly one"):
        parse_target("2026-01-01T00:00:00Z", None, True)
    with pytest.raises(UsageError, match="time zone"):
        parse_target("2026-01-01T00:00:00", None, False)
    with pytest.raises(UsageError, match="LSN"):
        parse_target(None, "zz", False)
    with pytest.raises(UsageError, match="whitespace"):
        parse_target(None, "0/3000028\r", False)
    assert parse_target("2026-01-01T01:00:00+01:00", None, False).time == "2026-01-01T00:00:00Z"


def test_recovered_time_from_the_server_log():
    log = ("LOG:  recovery stopping before commit of transaction 745, time 2026-11-29 18:53:40.1+00\n"
           "LOG:  last completed transaction was at log time 2026-11-29 18:53:38.585443+00\n")
    assert recovered_time(log) == "2026-11-29T18:53:38.585443Z"
    assert recovered_time("nothing") is None


def test_archive_command_uses_no_interpreter(tmp_path):
    from ragops.pg.pgctl import archive_settings

    settings = archive_settings(tmp_path / "spool", 30)
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "30"
    words = {w for part in settings["archive_command"].split("&&") for w in shlex.split(part)[:1]}
    assert words == {"cp", "sync", "mv"}


def test_check_gates_on_lag_and_gap(monkeypatch, tmp_path):
    class Config:
        env_name, project = "test", "p"
        backups = type("B", (), {"max_wal_lag": 60.0})()
        state_dir = tmp_path

        def resolve_path(self, value):
            return Path(value)

    monkeypatch.setattr("ragops.backup.catalog.storages", lambda config: (type("S", (), {"url": "file://x"})(), None))
    fresh = Coverage(_segments(1, 2, 3), [], [], [])
    monkeypatch.setattr(cov_mod, "coverage", lambda storage: fresh)
    now = T0 + timedelta(seconds=40)
    result = cov_mod.check_archive(Config(), metrics_file=str(tmp_path / "wal.prom"), now=now)
    assert result.ok and result.newest_age_seconds == 10
    assert "ragops_wal_check_ok{" in (tmp_path / "wal.prom").read_text()
    with pytest.raises(GateFailed, match="old"):
        cov_mod.check_archive(Config(), now=now + timedelta(seconds=120))
    monkeypatch.setattr(cov_mod, "coverage", lambda storage: Coverage(_segments(1, 3), [], find_gaps(_segments(1, 3)), []))
    with pytest.raises(GateFailed, match=segment_name(1, 2)):
        cov_mod.check_archive(Config(), now=now)


def test_wal_retention_keeps_what_the_oldest_kept_base_needs(tmp_path):
    from ragops.backup.storage import FileStorage
    from ragops.pitr.retention import expired_wal

    store = FileStorage(f"file://{tmp_path}", tmp_path)
    for segno in range(1, 6):
        name = segment_name(1, segno)
        store.put_bytes(object_key(name), b"x")
        store.put_bytes(sidecar_key(name), b"{}")
    store.put_bytes(sidecar_key("00000002.history"), b"{}")
    base = _Base()
    base.physical["start_wal_file"] = segment_name(1, 3)
    expired = [key for key, _reason in expired_wal(store, [base])]
    assert expired == [sidecar_key(segment_name(1, 1)), sidecar_key(segment_name(1, 2)),
                       object_key(segment_name(1, 1)), object_key(segment_name(1, 2))]
    assert expired_wal(store, []) == []            # no kept base backup: the archive is all there is


def test_the_supervisor_restarts_only_a_shipper_that_was_started_and_died(tmp_path):
    import json
    import os

    from ragops.pitr.archive import SHIPPER, dead_shipper
    from ragops.process import ManagedProcess

    class Platform:
        def proc(self, name: str) -> ManagedProcess:
            return ManagedProcess(name, tmp_path / "run", tmp_path / "logs")

    platform = Platform()
    assert dead_shipper(platform) == []                       # never started (or stopped by `down`)
    pid_file = platform.proc(SHIPPER).pid_file
    pid_file.parent.mkdir()
    # this process, with a marker from its own command line (a pytest-xdist worker's does not say "pytest")
    pid_file.write_text(json.dumps({"pid": os.getpid(), "pgid": os.getpid(), "marker": "python"}))
    assert dead_shipper(platform) == []                       # running
    pid_file.write_text(json.dumps({"pid": 2 ** 22 + 1, "pgid": 2 ** 22 + 1, "marker": "ragops.pitr.wal"}))
    assert [name for name, _restart in dead_shipper(platform)] == [SHIPPER]   # killed: restart it


def test_the_restored_server_syncs_with_syncfs_only_where_it_exists(monkeypatch):
    import platform
    import sys

    from ragops.pitr.replay import _syncfs_supported

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "release", lambda: "6.1.0-13-amd64")
    assert _syncfs_supported("16.2") and _syncfs_supported("14.0")
    assert not _syncfs_supported("13.14") and not _syncfs_supported("")   # PostgreSQL 13 refuses the setting
    monkeypatch.setattr(platform, "release", lambda: "5.4.0-150-generic")
    assert not _syncfs_supported("16.2")                                   # write-back errors unreported before 5.8


def test_a_segment_another_shipper_took_counts_as_shipped(tmp_path):
    """The shipper process and `backup wal ship` may both list one spool file: the one that finishes
    first commits its sidecar and removes it; the other must not report that as a failure."""
    import os

    from ragops.config import load_config
    from ragops.devstack import write_local_config
    from ragops.pitr.wal import Shipper

    spool = tmp_path / "spool"
    spool.mkdir()
    config = load_config(write_local_config(tmp_path, extra={"backups": {"wal": {"spool_dir": str(spool)}}}))
    name = segment_name(1, 3)
    (spool / name).write_bytes(os.urandom(4096))
    first, second = Shipper(config), Shipper(config)
    listed = second.pending()
    assert first.ship_once().shipped == [name] and not (spool / name).exists()
    second.pending = lambda: listed          # it listed the file before the first shipper removed it
    result = second.ship_once()
    assert result.failed == {} and result.shipped == []
    (spool / segment_name(1, 4)).write_bytes(b"x")
    os.unlink(spool / segment_name(1, 4))
    third = Shipper(config)
    third.pending = lambda: [segment_name(1, 4)]   # gone without a sidecar: that is a failure, named
    assert segment_name(1, 4) in third.ship_once().failed
