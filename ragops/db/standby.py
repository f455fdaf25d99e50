"""Standbys: planned switchover, rejoining a former primary (pg_rewind or a fresh base backup),
synchronous replication, and the WAL end a dead primary had written (for RPO).

The topology, fencing and promotion these build on are in ragops.db.replication.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ragops.config import Config, DbNode
from ragops.db.connect import db_password, find_node
from ragops.db.replication import (
    ADMIN_DB,
    Progress,
    PromoteResult,
    connect_node,
    fence_sql,
    int_to_lsn,
    is_alive,
    lsn_to_int,
    managed_node,
    primary_status,
    promote,
    record_topology,
    say,
    slot_name,
    topology,
    wait_dead,
)
from ragops.errors import OperationFailed, UsageError
from ragops.events import quiet
from ragops.pg.conninfo import conninfo as build_conninfo
from ragops.platforms import get_platform, platform_class
from ragops.secrets import redact

# ---- switchover ------------------------------------------------------------------------------

@dataclass
class SwitchoverResult:
    node: str
    previous_primary: str
    final_lsn: str
    replayed_lsn: str
    rows_lost: int
    promote: PromoteResult
    rejoined: dict | None = None
    seconds: float = 0.0


def switchover(config: Config, node: str, *, timeout: float = 60.0, rejoin_old: bool = False,
               progress: Progress = None) -> SwitchoverResult:
    """Planned promotion with zero data loss: stop writes on the primary, wait until `node` has
    replayed everything up to the primary's final WAL position, then promote it."""
    started = time.monotonic()
    statuses = topology(config)
    target = next((s for s in statuses if s.name == node), None)
    if target is None:
        find_node(config, node)   # an unknown name: ConfigError listing the nodes
        raise OperationFailed(f"{node}: not in the database topology")
    if target.role != "replica" or not target.reachable:
        raise UsageError(f"{node} is not a reachable replica ({target.role}); a switchover needs one")
    old = primary_status(statuses)
    if old is None:
        raise OperationFailed("no reachable primary accepting writes: a switchover needs the old primary up",
                              hint=f"for an unplanned failover use `ragops db promote {node}`")
    old_node = find_node(config, old.name)
    if not target.streaming:
        raise OperationFailed(f"{node} is not streaming from {old.name}; it would not receive the final WAL")
    managed = managed_node(config, old.name)
    rejoin_by_platform = managed is None and platform_class(config).rejoins_database_nodes(config)
    if rejoin_old and managed is None and not rejoin_by_platform:
        raise UsageError(f"--rejoin needs {old.name}'s local data directory or a platform that rebuilds it; the "
                         f"{platform_class(config).name} platform has neither here (nothing was changed)")
    say(progress, f"stopping writes on {old.name}")
    final = fence_sql(config, old_node, progress)
    if managed is not None:
        # a clean shutdown sends every WAL record, including the shutdown checkpoint, to the standbys
        say(progress, f"{old.name}: clean shutdown (pg_ctl stop -m fast)")
        managed.stop(mode="fast")
        control = controldata(config, old.name)
        checkpoint = control.get("Latest checkpoint location")
        if checkpoint:
            final = int_to_lsn(lsn_to_int(checkpoint) + 1)   # past the shutdown checkpoint record
    target_node = find_node(config, node)
    say(progress, f"waiting until {node} has replayed {final}")
    deadline = time.monotonic() + timeout
    replayed = None
    while True:
        with connect_node(config, target_node) as conn:
            replayed = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
        if managed is None:   # the fenced primary may still write WAL (checkpoints, hint bits)
            try:
                with connect_node(config, old_node) as conn:
                    final = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            except Exception:  # noqa: BLE001
                pass
        if replayed and lsn_to_int(replayed) >= lsn_to_int(final):   # NULL: not replaying yet
            break
        if time.monotonic() > deadline:
            raise OperationFailed(
                f"{node} replayed only up to {replayed} of {final} within {timeout:.0f}s; not promoted",
                hint=f"{old.name} is fenced (read-only{' and stopped' if managed else ''}). Either wait and run "
                     f"`ragops db switchover {node}` again, or undo: start {old.name} and `ALTER SYSTEM RESET "
                     f"default_transaction_read_only`")
        time.sleep(0.1)
    say(progress, f"{node} replayed {replayed} (final {final}): promoting")
    result = promote(config, node, fence_old=False, confirm_down=True, progress=progress)
    rejoined = None
    if rejoin_old:   # a local data directory: pg_rewind; else the platform's rebuild (docker: a fresh clone)
        rejoined = asdict(rejoin(config, old.name, progress=progress))
    return SwitchoverResult(node=node, previous_primary=old.name, final_lsn=final, replayed_lsn=replayed,
                            rows_lost=0, promote=result, rejoined=rejoined,
                            seconds=round(time.monotonic() - started, 3))


# ---- rejoin --------------------------------------------------------------------------------

def replica_conninfo(config: Config, primary_node: DbNode | str, replica_name: str, *,
                     with_password: bool = True) -> str:
    """primary_conninfo for `replica_name` streaming from `primary_node`; application_name is the
    replica's node name so synchronous_standby_names can name it."""
    primary = find_node(config, primary_node) if isinstance(primary_node, str) else primary_node
    return build_conninfo(host=primary.host, port=primary.port, user=config.database.superuser,
                          password=db_password(config) if with_password else None, application_name=replica_name,
                          connect_timeout=5)


def controldata(config: Config, name: str) -> dict:
    """pg_controldata of a managed node's data directory, as a dict."""
    from ragops.pg import pgctl

    managed = managed_node(config, name)
    if managed is None:
        raise OperationFailed(f"{name} has no local data directory")
    proc = pgctl.run_pg([managed.pg("pg_controldata"), "-D", str(managed.data_dir)])
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


@dataclass
class RejoinResult:
    node: str
    primary: str
    method: str                  # pg_rewind | none (already following) | pg_basebackup
    recovered_crash: bool
    streaming: bool
    slot: str
    lag_bytes: int | None
    seconds: float
    detail: str = ""


def _write_standby_config(managed, conninfo: str, slot: str) -> None:
    from ragops.pg import pgctl

    auto = managed.data_dir / "postgresql.auto.conf"
    drop = ("primary_conninfo", "primary_slot_name", "default_transaction_read_only", "synchronous_standby_names")
    lines = [ln for ln in (auto.read_text().splitlines() if auto.exists() else [])
             if ln.split("=", 1)[0].strip() not in drop]
    escaped = conninfo.replace("\\", "\\\\").replace("'", "''")   # postgresql.conf reads a backslash as an escape too
    lines += [f"primary_conninfo = '{escaped}'", f"primary_slot_name = '{slot}'"]
    pgctl.write_server_file(auto, "\n".join(lines) + "\n")   # never through a link the server account planted
    (managed.data_dir / "recovery.signal").unlink(missing_ok=True)
    pgctl.write_server_file(managed.data_dir / "standby.signal", "")


def rejoin(config: Config, node: str, *, fallback_basebackup: bool = True, timeout: float = 60.0,
           progress: Progress = None) -> RejoinResult:
    """Turn `node` (typically a former primary) into a streaming replica of the current primary:
    stop it, finish crash recovery if it died, pg_rewind from the primary, standby.signal +
    primary_conninfo + a slot on the primary, start, and wait until it streams."""
    from ragops.pg import pgctl

    started = time.monotonic()
    find_node(config, node)
    managed = managed_node(config, node)
    statuses = topology(config)
    primary = primary_status(statuses)
    if primary is None:
        raise OperationFailed("no reachable primary accepting writes to rejoin to",
                              hint="promote a replica first: ragops db promote NODE")
    if primary.name == node:
        raise UsageError(f"{node} is the current primary; promote another node before rejoining it")
    if managed is None:   # no local data directory: the platform's own rebuild (docker: a fresh clone)
        return _rejoin_by_platform(config, node, primary.name, primary.timeline, started, progress)
    primary_node = find_node(config, primary.name)
    slot = slot_name(node)
    conninfo = replica_conninfo(config, primary_node, node)
    me = next(s for s in statuses if s.name == node)
    with connect_node(config, primary_node) as conn:
        exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if not exists:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
            say(progress, f"created replication slot {slot} on {primary.name}")

    recovered = _stop_cleanly(config, managed, node, me.role, progress)
    method, detail = _rewind_or_clone(config, managed, node, primary.name, primary_node, slot, fallback_basebackup,
                                      progress)
    _write_standby_config(managed, conninfo, slot)
    say(progress, f"{node}: starting as a replica of {primary.name}")
    managed.start()
    node_cfg = find_node(config, node)
    if not pgctl.wait_until(lambda: _streaming(config, node_cfg), timeout, 0.25):
        raise OperationFailed(f"{node} started but is not streaming from {primary.name} after {timeout:.0f}s",
                              hint=f"see its log: {managed.log_file}")
    # slots a former primary kept for its replicas would hold WAL on it forever
    with connect_node(config, node_cfg) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE NOT active AND slot_type = 'physical'")
    if config.database.synchronous:
        configure_sync(config, progress)
    after = next(s for s in topology(config) if s.name == node)
    record_topology(config, primary=primary.name, timeline=primary.timeline, event="rejoin", rejoined=node)
    say(progress, f"{node}: streaming from {primary.name}, lag {after.lag_bytes} bytes")
    return RejoinResult(node=node, primary=primary.name, method=method, recovered_crash=recovered, streaming=True,
                        slot=slot, lag_bytes=after.lag_bytes, seconds=round(time.monotonic() - started, 3),
                        detail=detail)


def _rejoin_by_platform(config: Config, node: str, primary: str, timeline: int | None, started: float,
                        progress: Progress) -> RejoinResult:
    method = get_platform(config).rejoin_database_node(node, primary, progress or quiet)
    if method is None:
        raise UsageError(f"rejoin needs {node}'s local data directory; the {platform_class(config).name} platform "
                         f"has none here. Rebuild the replica with the platform's tooling (a fresh base backup)")
    if config.database.synchronous:
        configure_sync(config, progress)
    after = next(s for s in topology(config) if s.name == node)
    record_topology(config, primary=primary, timeline=timeline, event="rejoin", rejoined=node)
    say(progress, f"{node}: streaming from {primary}, lag {after.lag_bytes} bytes")
    return RejoinResult(node=node, primary=primary, method=method, recovered_crash=False,
                        streaming=bool(after.streaming), slot=slot_name(node), lag_bytes=after.lag_bytes,
                        seconds=round(time.monotonic() - started, 3))


def _stop_cleanly(config: Config, managed, node: str, role: str, progress: Progress) -> bool:
    """Stop `node`; if it had crashed, finish crash recovery in single-user mode (nobody can connect to it
    as to a primary meanwhile). True when crash recovery was needed."""
    from ragops.pg import pgctl

    if is_alive(managed):
        say(progress, f"{node}: stopping ({role})")
        managed.stop(mode="fast")
    elif managed.pid() is not None:   # a zombie postmaster: its pid file would block the restart
        wait_dead(managed, 5)
    state = controldata(config, node).get("Database cluster state", "")
    if state in ("shut down", "shut down in recovery"):
        return False
    say(progress, f"{node}: cluster state '{state}': running crash recovery in single-user mode")
    (managed.data_dir / "standby.signal").unlink(missing_ok=True)
    (managed.data_dir / "recovery.signal").unlink(missing_ok=True)
    pgctl.run_pg([managed.pg("postgres"), "--single", "-D", str(managed.data_dir), "-c", "archive_mode=off",
                  "postgres"], input="", timeout=300)
    return True


def _rewind_or_clone(config: Config, managed, node: str, primary: str, primary_node: DbNode, slot: str,
                     fallback_basebackup: bool, progress: Progress) -> tuple[str, str]:
    """pg_rewind `node` onto the primary's history; a fresh base backup when that fails (if allowed).
    Returns (method, pg_rewind's last line)."""
    from ragops.pg import pgctl

    say(progress, f"{node}: pg_rewind from {primary}")
    source = (f"host={primary_node.host} port={primary_node.port} user={config.database.superuser} "
              f"dbname={ADMIN_DB} connect_timeout=10")
    proc = pgctl.run_pg([managed.pg("pg_rewind"), "--target-pgdata", str(managed.data_dir), "--source-server",
                         source], env={"PGPASSWORD": db_password(config)}, check=False, timeout=600)
    output = (proc.stdout + proc.stderr).strip()
    detail = redact(output.splitlines()[-1] if output else "")
    if proc.returncode == 0:
        return ("none (already on the primary's history)" if "no rewind required" in output else "pg_rewind"), detail
    if not fallback_basebackup:
        raise OperationFailed(f"pg_rewind of {node} failed: {detail}",
                              hint=f"rebuild it from a base backup: ragops db rejoin {node} (with the fallback)")
    say(progress, f"{node}: pg_rewind failed ({detail}); rebuilding from a base backup")
    with connect_node(config, primary_node) as conn:   # clone_from creates the slot itself
        conn.execute("SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots "
                     "WHERE slot_name = %s AND NOT active", (slot, slot))
    managed.clone_from(pgctl.Node(primary, Path("/nonexistent"), primary_node.port, Path("/dev/null")),
                       config.database.superuser, db_password(config), slot)
    return "pg_basebackup", detail


def _streaming(config: Config, node: DbNode) -> bool:
    try:
        with connect_node(config, node) as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            return bool(row and row[0] == "streaming")
    except Exception:  # noqa: BLE001 - not up yet
        return False


# ---- synchronous replication ----------------------------------------------------------------

@dataclass
class SyncResult:
    primary: str
    synchronous_standby_names: str
    standbys: list[str]


def configure_sync(config: Config, progress: Progress = None, *, set_application_names: bool = True) -> SyncResult:
    """Set synchronous_standby_names on the current primary to the replicas' names (empty when
    `database.synchronous` is off). Replicas get application_name=<node> in primary_conninfo
    (reloadable since PostgreSQL 13) so the names match what pg_stat_replication shows."""
    statuses = topology(config)
    live = primary_status(statuses)
    if live is None:
        raise OperationFailed("no reachable primary accepting writes to configure synchronous replication on")
    replicas = [s for s in statuses if s.name != live.name]
    if set_application_names:
        for status in replicas:
            if status.role != "replica":
                continue
            with connect_node(config, find_node(config, status.name)) as conn:
                current = conn.execute("SELECT current_setting('primary_conninfo')").fetchone()[0] or ""
                if f"application_name={status.name}" not in current:
                    conninfo = replica_conninfo(config, live.name, status.name)
                    conn.execute("ALTER SYSTEM SET primary_conninfo = " + _quote(conninfo))
                    conn.execute("SELECT pg_reload_conf()")
                    say(progress, f"{status.name}: primary_conninfo application_name={status.name}")
    names = [s.name for s in replicas]
    quoted = ", ".join('"' + n.replace('"', '') + '"' for n in names)
    value = f"ANY 1 ({quoted})" if config.database.synchronous and names else ""
    with connect_node(config, find_node(config, live.name)) as conn:
        if value:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = " + _quote(value))
        else:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
    say(progress, f"{live.name}: synchronous_standby_names = '{value}'")
    return SyncResult(primary=live.name, synchronous_standby_names=value, standbys=names if value else [])


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ---- what a dead primary had written (RPO) --------------------------------------------------

def wal_end(config: Config, name: str, start_lsn: str | None = None) -> dict:
    """The end of the WAL a managed node wrote before it died, and its last commit time, read from
    its pg_wal with pg_waldump. Falls back to pg_controldata's last checkpoint."""
    from ragops.pg import pgctl

    managed = managed_node(config, name)
    if managed is None:
        return {}
    control = controldata(config, name)
    result = {"checkpoint_lsn": control.get("Latest checkpoint location"),
              "timeline": control.get("Latest checkpoint's TimeLineID"), "source": "pg_controldata"}
    start = start_lsn or control.get("Latest checkpoint's REDO location")
    if not start:
        return result
    proc = pgctl.run_pg([managed.pg("pg_waldump"), "-p", str(managed.data_dir / "pg_wal"), "-s", start,
                         "-t", str(result["timeline"] or 1)], check=False, timeout=120)
    last_end, last_commit = None, None
    for line in proc.stdout.splitlines():
        match = re.search(r"lsn: ([0-9A-F]+/[0-9A-F]+), prev", line)
        length = re.search(r"len \(rec/tot\):\s*\d+/\s*(\d+)", line)
        if match and length:
            last_end = lsn_to_int(match.group(1)) + int(length.group(1))
        commit = re.search(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\w+)", line)
        if commit:
            last_commit = commit.group(1)
    end_match = re.search(r"(?:invalid record length|error in WAL record|record with incorrect prev-link) at "
                          r"([0-9A-F]+/[0-9A-F]+)", proc.stderr)
    if end_match is None and last_end is None:   # nothing after the start: the start is the end
        end_match = re.search(r"could not find a valid record after ([0-9A-F]+/[0-9A-F]+)", proc.stderr)
    if end_match:
        result["end_lsn"] = end_match.group(1)
    elif last_end is not None:
        result["end_lsn"] = int_to_lsn(last_end)
    if last_commit:
        result["last_commit"] = last_commit
    if result.get("end_lsn"):
        result["source"] = "pg_waldump"
    return result
