"""The auto-failover drill's measurement (also bench/auto_failover_bench.py): under write load
through the router, kill -9 the leader's Patroni and postmaster, run no ragops command, and time
until writes are accepted again through the router and until the old node streams as a replica.
Local platform (the node's processes are on this machine)."""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ragops.errors import OperationFailed
from ragops.events import Say
from ragops.events import quiet as _noop
from ragops.ha import patroni


@dataclass
class Writes:
    """A writer thread: POST /api/v1/documents through the router every `interval` seconds."""
    url: str
    api_key: str
    interval: float = 0.05
    acked: list[tuple[float, float, str]] = field(default_factory=list)   # (sent, answered, id)
    failed: int = 0

    def __post_init__(self):
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, n: int) -> str | None:
        import json

        body = json.dumps({"title": f"auto-failover drill {n}", "content": "drill write"}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/documents", data=body, method="POST",
                                         headers={"X-API-Key": self.api_key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                return json.loads(resp.read()).get("id") if resp.status in (200, 201) else None
        except (OSError, ValueError, urllib.error.HTTPError):
            return None

    def _run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            n += 1
            sent = time.monotonic()
            doc = self._one(n)
            if doc:
                self.acked.append((sent, time.monotonic(), doc))
            else:
                self.failed += 1
            time.sleep(self.interval)

    def first_ack_sent_after(self, moment: float) -> float | None:
        return next((answered for sent, answered, _ in self.acked if sent > moment), None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)


def _member_state(config, name: str) -> str | None:
    for m in (patroni.cluster(config) or {}).get("members", []):
        if m["name"] == name:
            return m.get("state")
    return None


def _member_role(config, name: str) -> str | None:
    for m in (patroni.cluster(config) or {}).get("members", []):
        if m["name"] == name:
            return m.get("role")
    return None


def _missing(config, leader: str, ids: list[str]) -> int:
    from ragops.db.connect import connect, node_dsn

    with connect(node_dsn(config, leader)) as conn:
        found = conn.execute("SELECT count(*) FROM documents WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()[0]
    return len(ids) - int(found)


def kill_leader_node(config) -> tuple[str, float]:
    """kill -9 the leader's Patroni and postmaster; returns (its name, the monotonic time of the kill)."""
    name = patroni.leader(config)
    if name is None:
        raise OperationFailed("the Patroni cluster has no running leader to kill", hint="ragops db status")
    node = patroni.find(config, name)
    pids = [pid for pid in (node.proc.pid(), node.node.pid()) if pid]
    if len(pids) < 2:
        raise OperationFailed(f"{name}: its Patroni or postmaster is not running on this machine")
    at = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return name, at


def measure_auto_failover(config, *, timeout: float = 120, rejoin_timeout: float = 180,
                          progress: Say = _noop) -> dict:
    """One kill -9 of the leader node under write load; what a user of the service saw."""
    from ragops.db.connect import api_keys
    from ragops.platforms import get_platform

    url = get_platform(config).router_url()
    with Writes(url, api_keys(config)[0]) as writes:
        patroni.wait_for(lambda: writes.acked, 15, "a first write through the router")
        time.sleep(1.0)
        old, killed = kill_leader_node(config)
        progress(f"killed {old} (Patroni and postmaster, SIGKILL); no ragops command from here")
        accepted = patroni.wait_for(lambda: writes.first_ack_sent_after(killed), timeout,
                                    "a write accepted through the router after the kill")
        new = patroni.leader(config)
        progress(f"writes accepted through the router {accepted - killed:.1f}s after the kill (leader {new})")
        patroni.wait_for(lambda: _member_state(config, old) == "streaming", rejoin_timeout,
                         f"{old} to stream again as a replica", interval=0.5)
        rejoined = time.monotonic()
        if config.database.patroni.synchronous_mode:   # only a synchronous standby may be promoted
            patroni.wait_for(lambda: _member_role(config, old) == "sync_standby", rejoin_timeout,
                             f"{old} to be the synchronous standby", interval=0.5)
        progress(f"{old} streams again as a replica {rejoined - killed:.1f}s after the kill")
        before = [(answered, doc) for sent, answered, doc in writes.acked if answered <= killed]
        failed = writes.failed
    lost = _missing(config, new or old, [doc for _, doc in before]) if before else 0
    newest_lost = before[-1][0] if lost else killed
    return {"old_leader": old, "new_leader": new, "writes_accepted_seconds": round(accepted - killed, 2),
            "rejoined_seconds": round(rejoined - killed, 2), "acked_before_kill": len(before),
            "lost_acked_writes": lost, "rpo_seconds": round(killed - newest_lost, 2) if lost else 0.0,
            "failed_writes": failed, "synchronous_mode": config.database.patroni.synchronous_mode}


def leader_changes(config, seconds: float, progress: Say = _noop) -> dict:
    """False-failover risk: under write load for `seconds`, count leader changes (goal 0)."""
    from ragops.db.connect import api_keys
    from ragops.platforms import get_platform

    changes, last = 0, patroni.leader(config)
    with Writes(get_platform(config).router_url(), api_keys(config)[0], interval=0.02) as writes:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = patroni.leader(config)
            if now and now != last:
                changes += 1
                progress(f"leader changed: {last} -> {now}")
                last = now
            time.sleep(1)
    return {"seconds": seconds, "leader_changes": changes, "writes": len(writes.acked), "failed_writes": writes.failed}
