"""The HA fault matrix (tests/integration/test_ha_matrix.py, bench/ha_matrix.py): one fault at a time
on a running `database.ha: patroni` environment (local platform: the processes are on this machine),
under two writers, with a probe every 100 ms.

- the service writer: POST /api/v1/documents through the router (the endpoint behind it), 20/s;
- the direct writer: one connection with `target_session_attrs=read-write` over every node, kept
  while it works (a client that bypasses the endpoint), 10/s into its own table;
- the probe: each node's PostgreSQL (in recovery? read-only?) over a kept connection, and the endpoint
  twice (a kept connection and a new one): a moment in which two nodes accept writes directly, or in
  which the endpoint's two connections reach two different writable nodes, is counted.

A write counts as lost when it was acknowledged and is not on the leader once the cluster is whole.
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from ragops.events import Say
from ragops.events import quiet as _noop
from ragops.ha import patroni

FAULTS = ("node", "patroni", "freeze", "postmaster", "etcd-member", "etcd-quorum", "switchover", "down-up")
PROBE_TABLE = "ragops_ha_probe"
TICK = 0.1


# ---- load and probe ----------------------------------------------------------------------------
@dataclass
class DirectWriter:
    """Inserts n = 1, 2, 3 ... over one read-write connection; reconnects only when it breaks."""
    dsn: str
    run: str
    interval: float = 0.1
    acked: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self):
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        conn, n = None, 0
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                n += 1
                conn.execute(f"INSERT INTO {PROBE_TABLE} (run, n) VALUES (%s, %s)", (self.run, n))
                self.acked.append((time.monotonic(), n))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(self.interval)
        if conn is not None:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(10)


class Probe:
    """Every TICK: which nodes accept writes (direct), and where the endpoint's connections land."""

    def __init__(self, node_dsns: dict[str, str], endpoint_dsn: str):
        self.node_dsns, self.endpoint_dsn = node_dsns, endpoint_dsn
        self.conns: dict[str, object] = {}
        self.two_writable_s = 0.0           # two nodes accept writes (what a direct client can reach)
        self.endpoint_split_s = 0.0         # the endpoint's connections reach two writable nodes
        self.samples: list[tuple[float, list[str]]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ask(self, key: str, dsn: str, keep: bool = True) -> tuple[int, bool] | None:
        """(server port, writable) over the kept connection `key` (reconnected when broken), or None."""
        import psycopg

        conn = self.conns.get(key) if keep else None
        try:
            if conn is None:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=1, options="-c statement_timeout=1000")
                if keep:
                    self.conns[key] = conn
            row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery(), "   # type: ignore[attr-defined]
                               "current_setting('transaction_read_only')").fetchone()
            if not keep:
                conn.close()   # type: ignore[attr-defined]
            return int(row[0]), (row[1] is False and row[2] == "off")
        except (psycopg.Error, OSError):
            self.conns.pop(key, None)
            try:
                if conn is not None:
                    conn.close()   # type: ignore[attr-defined]
            except psycopg.Error:
                pass
            return None

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stop_event.is_set():
            writable = [name for name, dsn in self.node_dsns.items() if (self._ask(name, dsn) or (0, False))[1]]
            kept, fresh = self._ask("endpoint", self.endpoint_dsn), self._ask("new", self.endpoint_dsn, keep=False)
            now = time.monotonic()
            elapsed, last = now - last, now
            if len(writable) > 1:
                self.two_writable_s += elapsed
            if kept and fresh and kept[1] and fresh[1] and kept[0] != fresh[0]:
                self.endpoint_split_s += elapsed
            self.samples.append((now, writable))
            time.sleep(max(0.0, TICK - (time.monotonic() - now)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)


# ---- the cluster -------------------------------------------------------------------------------
def members(config) -> dict[str, dict]:
    return {m["name"]: m for m in (patroni.cluster(config) or {}).get("members", [])}


def whole(config) -> bool:
    """A running leader, every other node streaming (one synchronous with ha_sync), the endpoint writable."""
    from ragops.ha import endpoint
    from ragops.ha.sync import sync_settings

    found = members(config)
    roles = sorted((m.get("role") == "leader", m.get("state")) for m in found.values())
    want = sorted([(True, "running")] + [(False, "streaming")] * (len(patroni.nodes(config)) - 1))
    if sync_settings(config)["synchronous_mode"] and not any(m.get("role") == "sync_standby" for m in found.values()):
        return False   # only the synchronous standby may be promoted: the next fault needs one
    return roles == want and endpoint.writable(config)


def wait_whole(config, timeout: float = 180, progress: Say = _noop) -> None:
    """Until whole; a node left stopped is started (Patroni rejoins it)."""
    from ragops.ha.verbs import rejoin

    deadline = time.monotonic() + timeout
    while not whole(config):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster is not whole after {timeout:.0f}s: {members(config)}")
        for node in patroni.nodes(config):
            if not node.proc.running() and patroni.leader(config) not in (None, node.name):
                progress(f"rejoining {node.name}")
                rejoin(config, node.name, timeout=max(10.0, deadline - time.monotonic()))
        time.sleep(0.5)


def leader_and_timeline(config) -> tuple[str | None, int | None]:
    for name, m in members(config).items():
        if m.get("role") == "leader":
            return name, m.get("timeline")
    return None, None


def prepare(config) -> None:
    """The direct writer's table (through the endpoint: on the leader)."""
    import psycopg

    from ragops.ha import endpoint

    with psycopg.connect(endpoint.dsn(config), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (run text NOT NULL, n bigint NOT NULL, "
                     "at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run, n))")


# ---- the faults --------------------------------------------------------------------------------
def _kill(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid:
        os.kill(pid, sig)


def inject(config, fault: str, old: str, hold: float, progress: Say) -> None:
    """Cause `fault`; returns once it is over on the causing side (a freeze thawed, a command done)."""
    from ragops.ha.etcd import EtcdCluster
    from ragops.ha.verbs import switchover

    node = patroni.find(config, old)
    etcd = EtcdCluster(config)
    if fault == "node":
        pids = [node.proc.pid(), node.node.pid()]
        for pid in pids:
            _kill(pid)
    elif fault == "patroni":
        _kill(node.proc.pid())
    elif fault == "postmaster":
        _kill(node.node.pid())
    elif fault == "freeze":
        pid = node.proc.pid()
        _kill(pid, signal.SIGSTOP)
        try:
            time.sleep(hold)
        finally:
            _kill(pid, signal.SIGCONT)
    elif fault == "etcd-member":
        _kill(etcd.members[0].proc.pid())
    elif fault == "etcd-quorum":   # frozen, not killed: the supervisor would restart a dead one at once
        pids = [m.proc.pid() for m in etcd.members[:2]]
        for pid in pids:
            _kill(pid, signal.SIGSTOP)
        try:
            time.sleep(hold)
        finally:
            for pid in pids:
                _kill(pid, signal.SIGCONT)
    elif fault == "switchover":
        other = next(n.name for n in patroni.nodes(config) if n.name != old)
        switchover(config, other, progress=progress)
    elif fault == "down-up":
        from ragops.platforms import get_platform

        platform = get_platform(config)
        platform.down(progress=progress)
        platform.up(progress=progress)
    else:
        raise ValueError(f"unknown fault {fault!r} (one of {', '.join(FAULTS)})")
    progress(f"{fault}: injected on {old}")


#: what `status` must name within 5 s of the fault (faults whose condition lasts that long)
EXPECTED_PROBLEM = {"freeze": "PATRONI DOES NOT ANSWER", "etcd-quorum": "QUORUM LOST"}
#: faults after which status must say nothing is wrong once the fault is absorbed
QUIET_STATUS = ("etcd-member",)


# ---- one run -----------------------------------------------------------------------------------
def _direct_dsn(config) -> str:
    from ragops.db.connect import all_nodes, db_password

    nodes = all_nodes(config)
    db = config.database
    return (f"host={','.join(n.host for n in nodes)} port={','.join(str(n.port) for n in nodes)} dbname={db.name} "
            f"user={db.superuser} password={db_password(config)} target_session_attrs=read-write connect_timeout=2 "
            "application_name=ragops-matrix")


def _watch_status(config, at: float, until: float, seen: list) -> None:
    """The live HA view (what `status` prints and exits 3 on) about once a second until `until`."""
    from ragops.ha.manager import PatroniDatabase

    manager = PatroniDatabase(config)
    while time.monotonic() < until:
        try:
            problems = manager.status()["problems"]
        except Exception as exc:  # noqa: BLE001 - a status that fails is itself a wrong answer
            problems = [f"status failed: {exc}"]
        seen.append((round(time.monotonic() - at, 2), problems))
        time.sleep(0.8)


def _watch_leader(config, old: str, at: float, stop: threading.Event, out: dict) -> None:
    while not stop.is_set():
        name, _ = leader_and_timeline(config)
        if name and name != old and "promoted_s" not in out:
            out["promoted_s"] = round(time.monotonic() - at, 2)
        time.sleep(0.25)


def _missing(config, docs: list[str], run: str, ns: list[int]) -> tuple[set[str], set[int]]:
    """The acknowledged writes the leader does not have: service document ids, direct numbers."""
    import psycopg

    from ragops.ha import endpoint

    with psycopg.connect(endpoint.dsn(config), autocommit=True) as conn:
        found_docs = {str(r[0]) for r in conn.execute("SELECT id FROM documents WHERE id = ANY(%s::uuid[])",
                                                       (docs,)).fetchall()}
        found_ns = {int(r[0]) for r in conn.execute(f"SELECT n FROM {PROBE_TABLE} WHERE run = %s AND n = ANY(%s)",
                                                    (run, ns)).fetchall()}
    return set(docs) - found_docs, set(ns) - found_ns


def _try_switchover(config, node: str, progress: Say) -> bool:
    from ragops.errors import OperationFailed
    from ragops.ha.verbs import switchover

    try:
        switchover(config, node, progress=progress)
    except OperationFailed as exc:
        progress(f"switchover not yet: {exc}")
        return False
    return True


def _try_missing(config, docs: list[str], run: str, ns: list[int]) -> tuple[set[str], set[int]] | None:
    import psycopg

    try:
        return _missing(config, docs, run, ns)
    except psycopg.OperationalError:
        return None


def _longest_pause(times: list[float], start: float, end: float) -> float:
    """The longest time without an acknowledged write between `start` and `end`."""
    marks = [start] + [t for t in times if start < t < end] + [end]
    return max(b - a for a, b in itertools.pairwise(marks))


def run_fault(config, fault: str, *, hold: float | None = None, progress: Say = _noop) -> dict:
    """One fault under both writers and the probe; the row of the matrix."""
    import uuid

    from ragops.db.connect import all_nodes, api_keys, node_dsn
    from ragops.ha import endpoint
    from ragops.ha.drill import Writes
    from ragops.platforms import get_platform

    ttl = config.database.patroni.ttl
    hold = hold if hold is not None else {"freeze": ttl + 5.0, "etcd-quorum": 15.0}.get(fault, 0.0)
    wait_whole(config, progress=progress)
    if fault == "down-up" and leader_and_timeline(config)[0] == config.database.primary.name:
        progress("down-up: switching over first, so the leader is not the configured primary")
        patroni.wait_for(lambda: _try_switchover(config, all_nodes(config)[1].name, progress), 60,
                         "a switchover Patroni accepts (the synchronous standby is named a moment after)", 2.0)
        wait_whole(config, progress=progress)
    prepare(config)
    run = uuid.uuid4().hex[:8]
    nodes = {n.name: node_dsn(config, n, dbname="postgres", connect_timeout=1) for n in all_nodes(config)}
    old, timeline = leader_and_timeline(config)
    assert old is not None
    seen: list = []
    leader_out: dict = {}
    stop_leader = threading.Event()
    with Writes(get_platform(config).router_url(), api_keys(config)[0]) as service, \
            DirectWriter(_direct_dsn(config), run) as direct, \
            Probe(nodes, endpoint.dsn(config, dbname="postgres", connect_timeout=1)) as probe:
        patroni.wait_for(lambda: service.acked and direct.acked, 30, "a first write from both writers")
        time.sleep(1.0)
        at = time.monotonic()
        watchers = [threading.Thread(target=_watch_status, args=(config, at, at + 5.5, seen), daemon=True),
                    threading.Thread(target=_watch_leader, args=(config, old, at, stop_leader, leader_out),
                                     daemon=True)]
        for w in watchers:
            w.start()
        inject(config, fault, old, hold, progress)
        time.sleep(3.0)   # the fault's effects take a check or a loop to show: whole means after them
        wait_whole(config, progress=progress)
        patroni.wait_for(lambda: service.first_ack_sent_after(time.monotonic() - 0.5), 60,
                         "a write through the service after the fault")
        time.sleep(1.0)
        end = time.monotonic()
        stop_leader.set()
        for w in watchers:
            w.join(10)
    new, new_timeline = leader_and_timeline(config)
    wait_whole(config, progress=progress)
    missing_docs, missing_ns = patroni.wait_for(
        lambda: _try_missing(config, [d for _, _, d in service.acked], run, [n for _, n in direct.acked]),
        60, "the leader to count the acknowledged writes")
    # RPO: when the missing acknowledged writes were acknowledged, relative to the fault
    lost_at = sorted([a - at for _, a, d in service.acked if d in missing_docs]
                     + [a - at for a, n in direct.acked if n in missing_ns])
    problems = [p for _, ps in seen for p in ps]
    if fault in EXPECTED_PROBLEM:
        status_ok: bool | None = any(EXPECTED_PROBLEM[fault] in p for p in problems)
    elif fault in QUIET_STATUS:
        status_ok = not problems
    else:
        status_ok = None
    return {"fault": fault, "ha_sync": config.database.ha_sync, "old_leader": old, "new_leader": new,
            "timeline": [timeline, new_timeline],
            "acked_service": len(service.acked), "acked_direct": len(direct.acked),
            "lost_service": len(missing_docs), "lost_direct": len(missing_ns),
            "lost_span_s": [round(lost_at[0], 2), round(lost_at[-1], 2)] if lost_at else None,
            "two_writable_ms": round(probe.two_writable_s * 1000), "endpoint_split_ms": round(probe.endpoint_split_s * 1000),
            "write_pause_s": round(_longest_pause([a for _, a, _ in service.acked], at, end), 2),
            "promotion_s": leader_out.get("promoted_s"), "status_ok": status_ok, "status_seen": seen}
