"""Streaming replication: topology, fencing, promotion. Switchover, rejoin and synchronous mode
build on these in ragops.db.standby.

Which node is the primary changes over time. ragops.yaml names the *initial* primary; the truth is
`pg_is_in_recovery()` on each node. The last promotion is journalled in <state_dir>/topology.json
(a cache for when nodes are unreachable, never the only copy).

On the local platform every node is a managed server under <state_dir>/db/<name> (pgctl), so
fencing can stop a server and rejoin can run pg_rewind on its data directory. On other platforms
ragops only has SQL: fencing makes the old primary refuse writes, and rejoin is refused.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ragops.config import Config, DbNode
from ragops.db.connect import all_nodes, find_node, node_dsn
from ragops.errors import GateFailed, OperationFailed, UsageError
from ragops.events import MaybeSay as Progress
from ragops.events import quiet
from ragops.fsutil import write_atomic
from ragops.platforms import get_platform, platform_class
from ragops.secrets import redact

ADMIN_DB = "postgres"          # ragops' own bookkeeping lives in the always-present database
HEARTBEAT_TABLE = "ragops_heartbeat"


def say(progress: Progress, message: str) -> None:
    if progress:
        progress(redact(message))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---- LSN arithmetic --------------------------------------------------------------------------

def lsn_to_int(lsn: str) -> int:
    high, _, low = str(lsn).partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_or_none(lsn: str | None) -> int | None:
    """lsn_to_int for a position PostgreSQL may not know (NULL, or not reported)."""
    return lsn_to_int(lsn) if lsn else None


def int_to_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


# ---- topology ----------------------------------------------------------------------------------

@dataclass
class NodeStatus:
    name: str
    host: str
    port: int
    role: str                          # primary | replica | unreachable
    reachable: bool = False
    timeline: int | None = None
    current_lsn: str | None = None     # primary: pg_current_wal_lsn()
    received_lsn: str | None = None    # replica: flushed from the stream
    replayed_lsn: str | None = None    # replica: applied
    lag_bytes: int | None = None       # replica: primary's current LSN - replayed LSN
    lag_seconds: float | None = None   # replica: now() - last replayed commit, 0 when caught up
    upstream: str | None = None        # replica: the node (or host:port) it streams from
    streaming: bool | None = None      # replica: WAL receiver status is "streaming"
    sync_state: str | None = None      # replica: async | sync | potential | quorum (from the primary)
    read_only: bool | None = None      # primary: default_transaction_read_only (fenced by SQL)
    synchronous_standby_names: str | None = None
    slots: list[dict] = field(default_factory=list)
    replicas: list[dict] = field(default_factory=list)   # primary: pg_stat_replication rows
    managed: bool = False              # a local data directory ragops controls
    running: bool | None = None        # managed: postmaster alive
    error: str | None = None

    @property
    def fenced(self) -> bool:
        return self.role == "primary" and bool(self.read_only)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["fenced"] = self.fenced
        return data


def connect_node(config: Config, node: DbNode, timeout: int = 3):
    import psycopg

    return psycopg.connect(node_dsn(config, node, dbname=ADMIN_DB, connect_timeout=timeout), autocommit=True)


def managed_node(config: Config, name: str):
    """The local managed server for `name`, or None when this platform has no local data dirs."""
    if not platform_class(config).owns_database_files or config.database.dsn:
        return None
    from ragops.pg import pgctl

    node = pgctl.managed_node(config, name)
    return node if node.initialized else None


def connect_error(exc: Exception) -> str:
    """libpq's first line without its 'connection to server at ... failed:' preamble."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    first = text.splitlines()[0]
    return first.rsplit("failed:", 1)[-1].strip() or first


def _probe(config: Config, node: DbNode) -> NodeStatus:
    status = NodeStatus(name=node.name, host=node.host, port=node.port, role="unreachable")
    managed = managed_node(config, node.name)
    if managed is not None:
        status.managed = True
        status.running = is_alive(managed)
    try:
        conn = connect_node(config, node)
    except Exception as exc:  # noqa: BLE001 - an unreachable node is data, not an error
        status.error = redact(connect_error(exc))
        return status
    with conn:
        cur = conn.cursor()
        status.reachable = True
        cur.execute("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only'), "
                    "current_setting('synchronous_standby_names')")
        in_recovery, read_only, sync_names = cur.fetchone()
        status.synchronous_standby_names = sync_names or None
        cur.execute("SELECT slot_name, slot_type, active, restart_lsn::text FROM pg_replication_slots ORDER BY 1")
        status.slots = [{"name": r[0], "type": r[1], "active": r[2], "restart_lsn": r[3]} for r in cur.fetchall()]
        if in_recovery:
            status.role = "replica"
            cur.execute("SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                        "CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() "
                        "THEN 0 ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END, "
                        "(SELECT timeline_id FROM pg_control_checkpoint())")
            status.received_lsn, status.replayed_lsn, lag_s, status.timeline = cur.fetchone()
            status.lag_seconds = float(lag_s) if lag_s is not None else None
            cur.execute("SELECT status, received_tli, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver")
            row = cur.fetchone()
            if row:
                status.streaming = row[0] == "streaming"
                status.timeline = row[1] or status.timeline
                status.upstream = _node_name_at(config, row[2], row[3]) or f"{row[2]}:{row[3]}"
                status.slots = status.slots  # the replica's own slots
                status._slot = row[4]  # type: ignore[attr-defined]
            else:
                status.streaming = False
                cur.execute("SELECT current_setting('primary_conninfo')")
                conninfo = cur.fetchone()[0] or ""
                host = re.search(r"host=(\S+)", conninfo)
                port = re.search(r"port=(\d+)", conninfo)
                if host and port:
                    status.upstream = _node_name_at(config, host.group(1), int(port.group(1))) \
                        or f"{host.group(1)}:{port.group(1)}"
        else:
            status.role = "primary"
            status.read_only = read_only == "on"
            cur.execute("SELECT pg_current_wal_lsn()::text, "
                        "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
            status.current_lsn, status.timeline = cur.fetchone()
            cur.execute("SELECT r.application_name, r.client_addr::text, r.state, r.sync_state, "
                        "r.sent_lsn::text, r.flush_lsn::text, r.replay_lsn::text, "
                        "EXTRACT(EPOCH FROM r.replay_lag), s.slot_name "
                        "FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid")
            status.replicas = [{"application_name": r[0], "client_addr": r[1], "state": r[2], "sync_state": r[3],
                                "sent_lsn": r[4], "flush_lsn": r[5], "replay_lsn": r[6],
                                "replay_lag_seconds": float(r[7]) if r[7] is not None else None,
                                "slot_name": r[8]} for r in cur.fetchall()]
    return status


def _node_name_at(config: Config, host: str | None, port: int | None) -> str | None:
    for node in all_nodes(config):
        if node.port == port and (node.host == host or {node.host, host} <= {"127.0.0.1", "localhost"}):
            return node.name
    return platform_class(config).database_node_at(config, host, port)   # docker: by container name


def topology(config: Config) -> list[NodeStatus]:
    """Every configured node as it really is right now."""
    statuses = [_probe(config, node) for node in all_nodes(config)]
    primaries = [s for s in statuses if s.role == "primary"]
    for replica in (s for s in statuses if s.role == "replica"):
        upstream = next((p for p in primaries if p.name == replica.upstream), None)
        if upstream is None and len(primaries) == 1 and replica.upstream is None:
            upstream = primaries[0]
        if upstream is None:
            continue
        replayed = lsn_or_none(replica.replayed_lsn)
        current = lsn_or_none(upstream.current_lsn)
        if replayed is not None and current is not None:
            replica.lag_bytes = max(0, current - replayed)
        slot = getattr(replica, "_slot", None)
        for row in upstream.replicas:
            if (slot and row["slot_name"] == slot) or row["application_name"] == replica.name:
                replica.sync_state = row["sync_state"]
                break
    return statuses


def primary_status(statuses: list[NodeStatus]) -> NodeStatus | None:
    """The node accepting writes: a reachable primary that is not fenced (None if none or several)."""
    live = [s for s in statuses if s.role == "primary" and not s.fenced]
    return live[0] if len(live) == 1 else None


def current_primary(config: Config, statuses: list[NodeStatus] | None = None) -> DbNode:
    """The node that is primary now: asked from the nodes, else the journal, else the config."""
    statuses = statuses if statuses is not None else topology(config)
    live = primary_status(statuses)
    if live is not None:
        return find_node(config, live.name)
    primaries = [s for s in statuses if s.role == "primary"]
    if len(primaries) > 1 and not all(p.fenced for p in primaries):
        names = ", ".join(p.name for p in primaries)
        raise OperationFailed(f"more than one node accepts writes ({names}): split brain",
                              hint="fence all but one with `ragops db promote`/`db rejoin` before going on")
    recorded = read_topology(config).get("primary")
    if recorded:
        try:
            return find_node(config, recorded)
        except Exception:  # noqa: BLE001 - a renamed node: fall back to the config
            pass
    return config.database.primary


# ---- the journal: <state_dir>/topology.json ------------------------------------------------

def topology_file(config: Config) -> Path:
    return config.state_dir / "topology.json"


def read_topology(config: Config) -> dict:
    try:
        return json.loads(topology_file(config).read_text())
    except (OSError, ValueError):
        return {}


def record_topology(config: Config, *, primary: str, timeline: int | None, event: str, **extra) -> dict:
    path = topology_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = read_topology(config)
    entry = {"at": now_iso(), "event": event, "primary": primary, "timeline": timeline, **extra}
    history = (data.get("history") or [])[-49:] + [entry]
    data = {"primary": primary, "timeline": timeline, "updated_at": entry["at"], "event": event,
            **extra, "history": history}
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n", mode=0o644)
    return data


# ---- fencing -----------------------------------------------------------------------------------

@dataclass
class FenceResult:
    node: str
    method: str          # stopped | read-only | down-verified | down-confirmed | already-fenced
    detail: str = ""
    final_lsn: str | None = None


def fence_sql(config: Config, node: DbNode, progress: Progress = None) -> str:
    """Make a primary refuse writes: default_transaction_read_only=on, reload, end client sessions.
    Returns its WAL position after the sessions ended."""
    with connect_node(config, node) as conn:
        cur = conn.cursor()
        cur.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        cur.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)  # the reload is a signal: give backends a moment to read it
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
        ended = cur.fetchone()[0]
        cur.execute("SELECT pg_current_wal_lsn()::text")
        lsn = cur.fetchone()[0]
    say(progress, f"{node.name}: writes refused (default_transaction_read_only=on), {ended} session(s) ended")
    return lsn


def is_alive(managed) -> bool:
    """The postmaster of a managed node runs (a zombie left by kill -9 does not count)."""
    pid = managed.pid()
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def wait_dead(managed, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(managed):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def fence(config: Config, name: str, *, confirm_down: bool = False, progress: Progress = None,
          status: NodeStatus | None = None) -> FenceResult:
    """Make sure `name` can no longer accept writes: stop it when it is a managed local server,
    else make it refuse writes by SQL; an unreachable node needs `confirm_down`."""
    node = find_node(config, name)
    status = status or _probe(config, node)
    platform = get_platform(config)   # first: a platform that can stop the node for certain (docker)
    if not (status.reachable and status.role == "replica") and platform.fence_database_node(name, progress or quiet):
        return FenceResult(name, "stopped", f"stopped by the {platform.name} platform")
    managed = managed_node(config, name)
    if managed is not None:
        if is_alive(managed):
            lsn = None
            if status.reachable and status.role == "primary":
                try:  # end client sessions first so a fast stop does not wait on anything
                    lsn = fence_sql(config, node, progress)
                except Exception:  # noqa: BLE001 - stopping is the real fence
                    pass
            say(progress, f"{name}: stopping the server (pg_ctl stop -m fast)")
            try:
                managed.stop(mode="fast", timeout=30)
            except OperationFailed as exc:
                if is_alive(managed):   # it will not stop: kill it, a primary that cannot be stopped is worse
                    say(progress, f"{name}: {exc.message}; sending SIGKILL to the postmaster")
                    managed.kill9()
                    if not wait_dead(managed, 10):
                        raise OperationFailed(f"{name} could not be stopped or killed (pid {managed.pid()})",
                                              hint="stop it by hand, then retry with --confirm-down") from None
                    return FenceResult(name, "killed", "pg_ctl stop failed; postmaster killed", final_lsn=lsn)
                return FenceResult(name, "down-verified", "it died while being stopped", final_lsn=lsn)
            return FenceResult(name, "stopped", "managed server stopped", final_lsn=lsn)
        return FenceResult(name, "down-verified", "no postmaster process for its data directory")
    if status.reachable:
        if status.role == "replica":
            return FenceResult(name, "already-fenced", "it is a replica (read-only)")
        if status.fenced:
            return FenceResult(name, "already-fenced", "default_transaction_read_only is on")
        lsn = fence_sql(config, node, progress)
        return FenceResult(name, "read-only", "default_transaction_read_only=on, sessions ended", final_lsn=lsn)
    if not confirm_down:
        raise OperationFailed(
            f"old primary {name} ({node.host}:{node.port}) is unreachable and cannot be fenced from here",
            hint="make sure it is really down (or cut it off from clients), then repeat with --confirm-down")
    say(progress, f"{name}: unreachable; proceeding because it was confirmed down")
    return FenceResult(name, "down-confirmed", status.error or "unreachable")


# ---- promotion ---------------------------------------------------------------------------------

@dataclass
class PromoteResult:
    node: str
    previous_primary: str | None
    timeline: int | None
    lsn: str | None
    fenced: list[FenceResult]
    lag_bytes_before: int | None
    lag_seconds_before: float | None
    test_write: dict
    promoted_at: str
    seconds: float
    steps: list[dict] = field(default_factory=list)


def _old_primaries(config: Config, target: NodeStatus, statuses: list[NodeStatus]) -> list[NodeStatus]:
    """Every node that is or may be a primary other than the target: reachable primaries, plus the
    target's upstream (or the journalled primary) when it cannot be reached."""
    found = {s.name: s for s in statuses if s.name != target.name and s.role == "primary"}
    candidates = []
    if target.upstream and any(s.name == target.upstream for s in statuses):
        candidates.append(target.upstream)
    recorded = read_topology(config).get("primary")
    if recorded:
        candidates.append(recorded)
    candidates.append(config.database.primary.name)
    by_name = {s.name: s for s in statuses}
    for name in candidates:
        if name != target.name and name in by_name and by_name[name].role == "unreachable":
            found.setdefault(name, by_name[name])
            break
    return list(found.values())


@dataclass
class PromotionCheck:
    """Everything `db promote` verifies before its first change; `--dry-run` shows exactly this."""
    node: str
    target: NodeStatus
    target_node: DbNode
    lag_bytes: int | None
    lag_seconds: float | None
    old: list[NodeStatus]
    fencing: list[tuple[NodeStatus, str]]      # (old primary, already-fenced | down-verified | down-confirmed | fence)
    notes: list[str] = field(default_factory=list)


def check_promotion(config: Config, node: str, *, max_lag: int | None = None, force: bool = False,
                    confirm_down: bool = False, fence_old: bool = True) -> PromotionCheck:
    """The checks of `promote`, in the same order, raising the same errors; changes nothing."""
    if max_lag is not None and max_lag < 0:
        raise UsageError(f"--max-lag: expected a number of bytes (0 or more), got {max_lag}")
    target_node = find_node(config, node)
    statuses = topology(config)
    target = next(s for s in statuses if s.name == node)
    if not target.reachable:
        raise OperationFailed(f"{node} is unreachable ({target.error}); cannot promote it")
    if target.role != "replica":
        raise UsageError(f"{node} is not a replica (it is {'a fenced ' if target.fenced else 'the '}primary); "
                         f"nothing to promote")
    lag_bytes, lag_seconds = target.lag_bytes, target.lag_seconds
    if lag_bytes is None and target.received_lsn and target.replayed_lsn:  # upstream down: unapplied WAL only
        lag_bytes = max(0, lsn_to_int(target.received_lsn) - lsn_to_int(target.replayed_lsn))
    check = PromotionCheck(node, target, target_node, lag_bytes, lag_seconds, [], [])
    if max_lag is not None and lag_bytes is not None and lag_bytes > max_lag:
        if not force:
            raise GateFailed(f"{node} lags {lag_bytes} bytes behind, above the limit of {max_lag}",
                             hint="wait for it to catch up (ragops db status), or accept the loss with --force")
        check.notes.append(f"lag limit overridden: {lag_bytes} > {max_lag} bytes (--force)")
    check.old = _old_primaries(config, target, statuses)
    for status in check.old:
        managed = managed_node(config, status.name)
        if status.fenced:
            check.fencing.append((status, "already-fenced"))
        elif status.role == "unreachable" and managed is not None and not is_alive(managed):
            check.fencing.append((status, "down-verified"))
        elif status.role == "unreachable" and confirm_down:
            check.fencing.append((status, "down-confirmed"))
        elif not fence_old:
            alive = "alive and accepts writes" if status.reachable else "unreachable (not confirmed down)"
            raise OperationFailed(f"refusing to promote {node}: the old primary {status.name} is {alive}",
                                  hint="fence it first (stop it, or let promote fence it), or confirm it is "
                                       "down with --confirm-down")
        else:
            check.fencing.append((status, "fence"))
    return check


def promote(config: Config, node: str, *, max_lag: int | None = None, force: bool = False,
            confirm_down: bool = False, fence_old: bool = True, progress: Progress = None) -> PromoteResult:
    """Promote replica `node` after fencing the old primary.

    Refuses when `node` is not a reachable replica, when its lag is above `max_lag` bytes (unless
    `force`), or when an old primary is alive and not fenced (`fence_old=False` only checks; the
    default fences it: stops a managed local server, else makes it refuse writes). An unreachable
    old primary needs `confirm_down` unless it is a managed local server with no process.
    """
    started = time.monotonic()
    steps: list[dict] = []

    def step(name: str, detail: str = "") -> None:
        steps.append({"step": name, "at": now_iso(), "detail": detail})
        say(progress, f"{name}{': ' + detail if detail else ''}")

    check = check_promotion(config, node, max_lag=max_lag, force=force, confirm_down=confirm_down,
                            fence_old=fence_old)
    target, target_node, lag_bytes, lag_seconds, old = (check.target, check.target_node, check.lag_bytes,
                                                        check.lag_seconds, check.old)
    step("checked", f"{node} is a replica on timeline {target.timeline}, lag {lag_bytes} bytes / "
                    f"{lag_seconds if lag_seconds is not None else '?'} s")
    for note in check.notes:
        step(*note.split(": ", 1))
    detail = {"already-fenced": "default_transaction_read_only is on",
              "down-verified": "no postmaster process for its data directory"}
    fenced: list[FenceResult] = []
    for status, method in check.fencing:
        if method == "fence":
            fenced.append(fence(config, status.name, confirm_down=confirm_down, progress=progress, status=status))
        else:
            fenced.append(FenceResult(status.name, method, detail.get(method, status.error or "unreachable")))
    for result in fenced:
        step("fenced", f"{result.node}: {result.method} ({result.detail})")

    with connect_node(config, target_node, timeout=5) as conn:
        cur = conn.cursor()
        step("promoting", f"SELECT pg_promote(wait => true) on {node}")
        cur.execute("SELECT pg_promote(wait => true, wait_seconds => 60)")
        if not cur.fetchone()[0]:
            raise OperationFailed(f"pg_promote on {node} did not finish within 60 s",
                                  hint=f"the old primary is fenced; check {node}'s log, then retry "
                                       f"`ragops db promote {node} --confirm-down`")
        # a promoted node must not inherit a fence or wait for standbys that are not there
        cur.execute("ALTER SYSTEM RESET default_transaction_read_only")
        cur.execute("ALTER SYSTEM RESET synchronous_standby_names")
        cur.execute("SELECT pg_reload_conf()")
    step("promoted", f"{node} left recovery")
    write = test_write(config, target_node, note=f"promoted {node}")
    step("test write", f"row {write['id']} written on {node} in {write['seconds'] * 1000:.0f} ms")
    after = _probe(config, target_node)
    previous = old[0].name if old else None
    record_topology(config, primary=node, timeline=after.timeline, event="promote", previous_primary=previous,
                    fenced={f.node: f.method for f in fenced})
    step("recorded", f"topology.json: primary={node} timeline={after.timeline}")
    return PromoteResult(node=node, previous_primary=previous, timeline=after.timeline, lsn=after.current_lsn,
                         fenced=fenced, lag_bytes_before=lag_bytes, lag_seconds_before=lag_seconds,
                         test_write=write, promoted_at=now_iso(), seconds=round(time.monotonic() - started, 3),
                         steps=steps)


def test_write(config: Config, node: DbNode, note: str = "", timeout: float = 15.0) -> dict:
    """Write one row into ragops_heartbeat on `node` (retrying while the un-fence reload lands)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            with connect_node(config, node) as conn:
                cur = conn.cursor()
                cur.execute("SET statement_timeout = '10s'")
                cur.execute(f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} (id bigserial PRIMARY KEY, "
                            "node text NOT NULL, note text, at timestamptz NOT NULL DEFAULT now())")
                cur.execute(f"INSERT INTO {HEARTBEAT_TABLE} (node, note) VALUES (%s, %s) RETURNING id, at",
                            (node.name, note))
                row_id, at = cur.fetchone()
                return {"node": node.name, "id": row_id, "at": at.isoformat(),
                        "seconds": round(time.monotonic() - started, 3)}
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            if time.monotonic() > deadline:
                raise OperationFailed(f"test write on {node.name} failed: {redact(str(exc).strip())}") from None
            time.sleep(0.2)


def slot_name(name: str) -> str:
    """The replication slot of a replica node: lower case, [a-z0-9_] only, at most 63 bytes
    (PostgreSQL's slot name rules). The one place that names a slot."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())[:63]
