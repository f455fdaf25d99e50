"""The local supervisor: restarts a dead router, a dead live color or a dead WAL shipper by itself.

`ragops up` starts it on the local platform (`python -m ragops.supervisor CONFIG ENV`, a tracked
process like the others) and `ragops down` stops it first. Every CHECK_INTERVAL it looks at the
process table: a dead router is started again; a color the router gives traffic to whose server
died (not stopped on purpose: stop_color marks that) is started again with the version, deploy id
and environment it ran; a WAL shipper that `up` started and that died is started again (the
segments wait in the spool meanwhile, none is lost). A component that keeps crashing is retried
with a backoff (1, 2, 4 ... 30 s).
What it saw goes to <journal dir>/supervisor.json, which `ragops status` shows: for each component
when it went down, how long it was down, and how many restarts it took.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ragops import journal

CHECK_INTERVAL = 0.25
MAX_BACKOFF = 30.0
STATE_FILE = "supervisor.json"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextmanager
def restoring(platform):
    """One restorer at a time (the supervisor, or `ragops up`): neither starts a color twice."""
    platform.run_dir.mkdir(parents=True, exist_ok=True)
    with open(platform.run_dir / "restore.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def config_fingerprint(config) -> str:
    """A digest of the environment's settings as loaded (secret references, never their values)."""
    import hashlib
    import json

    text = json.dumps(config.env.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_supervisor(platform, progress) -> list[str]:
    """Start the supervisor unless it runs with the settings the file gives now; a supervisor started
    from other settings acts on those (ha_fast_release, monitoring, the router's config), so it is
    restarted, and `up` says why. Returns the change made."""
    from ragops.process import ensure_ragops_process

    proc = platform.proc("supervisor")
    stamp = platform.run_dir / "supervisor.config"
    wanted = config_fingerprint(platform.config)
    try:
        recorded = stamp.read_text().strip()
    except OSError:
        recorded = None
    restarted = False
    if proc.running() and recorded != wanted:
        progress("restarting the supervisor: this environment's settings changed since it started")
        proc.stop(timeout=5)
        restarted = True
    started = ensure_ragops_process(proc, "ragops.supervisor", platform.config, progress,
                                    "starting the supervisor (restarts a dead router, live color or WAL shipper)")
    if started:
        stamp.write_text(wanted + "\n")
    if restarted:
        return ["restart supervisor (settings changed)"]
    return ["start supervisor"] if started else []


def stop_supervisor(platform) -> bool:
    proc = platform.proc("supervisor")
    was_running = proc.running()
    proc.stop(timeout=5)
    return was_running


def read_status(platform) -> dict | None:
    """What the supervisor saw (None where none ever ran), with whether it runs now."""
    data = journal.read_json(platform.journal_dir() / STATE_FILE)
    if data is None:
        return None
    try:
        cmdline = Path(f"/proc/{data.get('pid')}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    data["running"] = b"ragops.supervisor" in cmdline
    for entry in data.get("components", {}).values():
        entry.pop("down_at", None)
    return data


class Supervisor:
    def __init__(self, platform):
        self.platform = platform
        self.path = platform.journal_dir() / STATE_FILE
        self.state: dict = {"pid": os.getpid(), "started": _now_iso(), "components": {}}
        self.retry_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.last_restart: dict[str, float] = {}

    def component(self, name: str) -> dict:
        return self.state["components"].setdefault(
            name, {"down_since": None, "last_outage_s": None, "restarts": 0, "last_restart": None, "last_error": None})

    def save(self) -> None:
        journal.write_json(self.path, self.state)

    def check(self) -> None:
        platform = self.platform
        seen: set[str] = set()   # the components found down at this tick
        if not platform.router_running():
            self.heal("router", lambda: self.start_router())
            seen.add("router")
        from ragops.monitoring import local as monitoring

        if platform.config.env.monitoring.prometheus == "local" and not platform.proc(monitoring.PROC).running():
            self.heal("prometheus", lambda: monitoring.ensure(platform, lambda _line: None))
            seen.add("prometheus")
        from ragops.monitoring import tracing

        if platform.config.env.monitoring.tracing == "local" and not platform.proc(tracing.PROC).running():
            self.heal("jaeger", lambda: tracing.ensure(platform, lambda _line: None))
            seen.add("jaeger")
        for color in platform.was_live():
            if platform.color_state(color, probe=False).running or platform.stopped_on_purpose(color):
                continue
            self.heal(color, lambda: platform.restore_live(skip_stopped=True))
            seen.add(color)
        from ragops.db.bringup import database_manager

        manager = database_manager(platform.config)   # an HA engine's processes (etcd, Patroni, fences)
        for name, restart in manager.dead_components() if manager is not None else []:
            self.heal(name, restart)
            seen.add(name)
        from ragops.pitr.archive import dead_shipper

        for name, restart in dead_shipper(platform):   # the WAL archive's shipper (ragops/pitr)
            self.heal(name, restart)
            seen.add(name)
        self.close_outages(seen)

    def start_router(self) -> None:
        with restoring(self.platform):
            if not self.platform.router_running():
                self.platform.start_router()

    def close_outages(self, seen: set[str]) -> None:
        """A component found down before and not now came back without a restart of ours (its
        waiting ended, `up` or `db rejoin` started it): its outage ends here, counted from the first
        failed look."""
        for name, entry in self.state["components"].items():
            if entry.get("down_since") and name not in seen:
                entry["last_outage_s"] = round(time.time() - entry.pop("down_at", time.time()), 2)
                entry["down_since"] = None
                self.save()

    def heal(self, name: str, restart) -> None:
        """`restart` None: down, but not to be restarted yet (a dead leader's Patroni waits for its
        key to expire): the outage is counted from this first look all the same."""
        entry = self.component(name)
        if entry["down_since"] is None:
            entry["down_since"] = _now_iso()
            entry["down_at"] = time.time()
            # down again soon after the last restart: a crash loop, restart with a backoff (1, 2, 4 ... 30 s)
            recent = time.monotonic() - self.last_restart.get(name, -1e9) < 10
            self.failures[name] = self.failures.get(name, 0) + 1 if recent else 0
            delay = min(MAX_BACKOFF, 2.0 ** (self.failures[name] - 1)) if self.failures[name] else 0.0
            self.retry_at[name] = time.monotonic() + delay
            self.save()
        if restart is None or time.monotonic() < self.retry_at.get(name, 0):
            return
        try:
            restart()
        except Exception as exc:  # noqa: BLE001 - keep supervising; the error is recorded
            self.retry_at[name] = time.monotonic() + min(MAX_BACKOFF, 2.0 ** self.failures.get(name, 0))
            entry["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
            self.save()
            return
        self.last_restart[name] = time.monotonic()
        entry["restarts"] += 1
        entry["last_restart"] = _now_iso()
        entry["last_outage_s"] = round(time.time() - entry.pop("down_at", time.time()), 2)
        entry["down_since"] = None
        self.save()

    def run(self) -> None:
        self.save()
        while True:
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a failed look is retried at the next tick
                self.state["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
            time.sleep(CHECK_INTERVAL)


def main(argv: list[str]) -> None:
    from ragops.config import load_config
    from ragops.platforms import get_platform

    config = load_config(Path(argv[0]), argv[1])
    Supervisor(get_platform(config)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
