"""The building blocks of one deploy: its record, journal, lock, gates and the external changes it makes.

Every external change (router weights, color start/stop, migration) goes through `change()`: the
intent is journaled before it and the result after it; `reconcile()` settles a journal with what the
platform really has. The phases and what resume/abort do from each are in ragops/deploy/states.py.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

from ragops.config import Config
from ragops.deploy import oplock
from ragops.deploy.history import Journal, now_iso
from ragops.deploy.lock import DeployLock, describe, whoami
from ragops.deploy.states import checkpoint, live_matches
from ragops.errors import GateFailed, OperationFailed
from ragops.events import Event, Progress, ignore, say
from ragops.notify.outbox import Outbox
from ragops.platforms import get_platform
from ragops.platforms.base import other_color


@dataclass
class DeployResult:
    id: str
    version: str
    strategy: str
    result: str                        # succeeded | rolled_back | aborted | paused | failed | planned
    from_version: str | None = None
    from_color: str | None = None
    to_color: str | None = None
    reason: str | None = None
    switch_ms: float | None = None     # write of the router config -> router confirmed it
    seconds: float = 0.0
    steps: list[dict] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)   # each event's outcome: delivered or why not


@dataclass
class DeployOptions:
    version: str
    strategy: str                      # blue-green | canary | rollback
    steps: list[int]
    step_pause: float
    pause_at: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    on_inconclusive: str = "pause"     # canary: an analysis without a verdict pauses (or fails)


def _shown(weights: dict[str, int]) -> str:
    return ", ".join(f"{c} {w}%" for c, w in sorted(weights.items())) or "nothing"


class DeploymentBase:
    """One deploy: its record, journal, lock, and the platform it drives."""

    def __init__(self, config: Config, options: DeployOptions, progress: Progress = ignore,
                 platform=None, record: dict | None = None, command: str = "ragops deploy"):
        self.config = config
        self.options = options
        self.report = progress
        # engines that still report plain lines (platforms, migrations, readiness) get this
        self.progress = partial(say, progress)
        self.platform = platform or get_platform(config)
        self.journal = Journal(self.platform.journal_dir())
        self.record = record or {
            "id": f"d-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            "version": options.version, "strategy": options.strategy, "who": whoami(),
            "started": now_iso(), "phase": "lock", "steps": [], "gates": {},
            "options": {"steps": options.steps, "step_pause": options.step_pause,
                        "pause_at": options.pause_at, "env": options.env,
                        "on_inconclusive": options.on_inconclusive},
        }
        self.lock = DeployLock(self.platform.lock_backend(), config.deploy.lock_ttl, command,
                               deploy_id=self.record["id"], brief=options.strategy == "rollback")
        self.lock_taken = False        # a rollback takes it before it decides where to go
        self.started = time.monotonic()
        # a rollback's events wait until its flip is confirmed; nothing waits for a webhook
        self.outbox = Outbox(config, self.progress, hold=options.strategy == "rollback")
        self.resumed = False           # set by reconcile(): steps then check the platform before acting

    # ---- bookkeeping -----------------------------------------------------------------------
    def phase(self, name: str, **extra) -> None:
        self.check_not_overridden()
        self.record["phase"] = name
        self.record.update(extra)
        self.journal.save(self.record)
        self.report(Event("phase", f"phase: {name}", {"phase": name, "deploy_id": self.record["id"]}))
        checkpoint(f"phase:{name}")

    def step(self, name: str, ok: bool | None, detail: str = "", *, kind: str = "step",
             data: dict | None = None, **extra) -> dict:
        """Journal one step, then report it as an event of `kind` (its data: name, ok, detail, + `data`)."""
        entry = {"name": name, "ok": ok, "detail": detail, "at": now_iso(), **extra}
        self.record["steps"].append(entry)
        self.journal.save(self.record)
        mark = "" if ok is None else ("ok " if ok else "FAILED ")
        self.report(Event(kind, f"{mark}{name}" + (f": {detail}" if detail else ""),
                          {"name": name, "ok": ok, "detail": detail, **(data or {})}))
        return entry

    def change(self, action: str, do: Callable[[], Any], **intent) -> Any:
        """Make one external change: its intent is journaled before, the caller journals the result
        (a step) after. A kill in between leaves the intent for reconcile() to settle."""
        self.record["intent"] = {"action": action, "at": now_iso(), **intent}
        self.journal.save(self.record)
        checkpoint(f"before:{action}")
        result = do()
        checkpoint(f"after:{action}")
        self.record.pop("intent", None)
        return result

    def gate_passed(self, name: str) -> bool:
        return name in self.record.setdefault("gates", {})

    def pass_gate(self, name: str) -> None:
        """Recorded with the step that follows (resume never redoes a gate recorded as passed)."""
        self.record.setdefault("gates", {})[name] = now_iso()

    def forget_gates(self, color: str) -> None:
        gates = self.record.setdefault("gates", {})
        for name in [g for g in gates if g.split(":", 1)[-1].split("@")[0] == color]:
            del gates[name]

    def finish(self, result: str, reason: str | None = None, event: str | None = None) -> DeployResult:
        """`event`: the notification when it differs from the result (a canary aborted by its
        analysis is the event `failed`, an operator's abort stays `aborted`)."""
        self.record.update(result=result, reason=reason, ended=now_iso(),
                           seconds=round(time.monotonic() - self.started, 2))
        self.record.pop("phase", None)
        self.record.pop("intent", None)
        self.journal.finish(self.record, limit=self.config.deploy.history_limit)
        r = self.record
        self.report(Event("done", f"deploy {r['id']} {result}" + (f": {reason}" if reason else ""),
                          {"id": r["id"], "result": result, "reason": reason, "seconds": r["seconds"]}))
        self.notify(event or result, reason)
        return self.result()

    def notify(self, event: str, detail: str | None = None) -> None:
        """notify.webhook: one event of this deploy or rollback, queued (sent in the background)."""
        from ragops import notify

        if not notify.wanted(self.config, event):
            return
        r = self.record
        kind = "rollback" if r["strategy"] == "rollback" else "deploy"
        message = (f"{kind} of {r['version']} to {self.config.env_name}: {event.replace('_', ' ')}"
                   + (f" ({detail})" if detail else ""))
        self.outbox.put(kind, event, message,
                        fields={"deploy_id": r["id"], "version": r["version"], "strategy": r["strategy"],
                                "from_version": r.get("from_version"), "who": r.get("who")})

    def deliver_notifications(self) -> list[dict]:
        """At the very end of the command: wait at most notify.timeout for the queued events."""
        return self.outbox.finish(self.config.env.notify.timeout)

    def result(self) -> DeployResult:
        r = self.record
        return DeployResult(id=r["id"], version=r["version"], strategy=r["strategy"],
                            result=r.get("result", "in progress"), from_version=r.get("from_version"),
                            from_color=r.get("from_color"), to_color=r.get("to_color"), reason=r.get("reason"),
                            switch_ms=r.get("switch_ms"), seconds=r.get("seconds", 0.0), steps=r["steps"])

    def take_lock(self, take_over: str | None = None) -> None:
        """The deploy lock; a dead owner's lock that no journal explains is taken over and recorded."""
        if not self.lock_taken:
            oplock.acquire(self.lock, self.journal, take_over_deploy=take_over, on_wait=self.progress)
            self.lock_taken = True
        if (self.journal.pending_request() or {}).get("action") == oplock.FORCED:
            self.journal.clear_request()     # meant for the deploy it overrode, which has ended
        if self.lock.taken_over:
            stale = self.lock.taken_over
            self.journal.audit("stale lock taken over", by=whoami(), lock=stale)
            self.progress(f"took over a stale deploy lock of {describe(stale)}: its owner is gone and "
                          "it left no deploy journal")

    # ---- reconcile (resume, promote, abort) -------------------------------------------------
    def ours(self, color: str) -> bool:
        """Whether `color` runs this deploy's version because this deploy started it (platform truth)."""
        state = self.platform.color_state(color, probe=False)
        return bool(state.running and state.version == self.options.version
                    and state.deploy_id == self.record["id"])

    def reconcile(self) -> None:
        """Read the router's live weights and the colors, and settle the journal to them before acting."""
        self.resumed = True
        live = self.platform.router_weights()
        new, old = self.record.get("to_color"), self.record.get("from_color")
        intent = self.record.pop("intent", None)
        seen = [f"router serves {_shown(live)}"]
        if new:
            state = self.platform.color_state(new, probe=False)
            seen.append(f"{new} " + (f"runs {state.version} ({state.deploy_id})" if state.running else "is stopped"))
            if not self.ours(new) and self.options.strategy != "rollback":
                self.forget_gates(new)
        if intent:
            seen.append(f"interrupted {intent['action']}: " + self._settled(intent, live))
        self.step("reconcile", None, "; ".join(seen), live_weights=live)
        passed = self.gate_passed(f"ready:{new}") and self.gate_passed(f"smoke:{new}")
        if new and old and live.get(new) and not passed and self.options.strategy != "rollback":
            self.switch({old: 100, new: 0}, f"traffic back to {old}: {new} has not passed its gates")

    def _settled(self, intent: dict, live: dict[str, int]) -> str:
        action = intent.get("action")
        if action == "weights":
            return "applied" if live_matches(live, intent.get("weights") or {}) else "not applied (redone if needed)"
        if action in ("start", "stop") and intent.get("color"):
            running = self.platform.color_state(intent["color"], probe=False).running
            return f"{intent['color']} is {'running' if running else 'stopped'}"
        return "redone if needed"

    # ---- building blocks ------------------------------------------------------------------
    def live_color(self):
        """The color serving most traffic, with its state (None on a first deploy)."""
        states = {c.color: c for c in self.platform.colors()}
        live = max(states.values(), key=lambda c: c.weight)
        return (live if live.weight > 0 else None), states

    def preflight(self) -> None:
        self.phase("preflight")
        live, states = self.live_color()
        if live is None:
            self.step("preflight", True, "no color serves traffic yet: first deploy, nothing to roll back to")
        elif not (live.running and live.ready):
            self._refuse(f"preflight: the live color {live.color} is not healthy "
                         f"({live.detail or 'not ready'}); fix it before deploying on top of it")
        else:
            self.step("preflight", True, f"live color {live.color} runs {live.version}, healthy, kept for rollback")
        self.record.update(from_color=live.color if live else None, from_version=live.version if live else None,
                           to_color=other_color(live.color) if live else "blue")
        self._check_migrations()

    def _check_migrations(self) -> None:
        """The migration gate: pending migrations of <service.path>/migrations must keep the live
        color ready (it stays warm for a rollback flip), so one marked breaking is refused."""
        if not self.platform.runs_migrations_in_preflight:
            return
        from ragops.db.bringup import live_primary, migrate
        from ragops.db.connect import node_dsn
        from ragops.pg.migrate import breaking_migrations, pending_migrations

        primary = live_primary(self.config)
        if primary is None:
            self._refuse("preflight: no reachable primary database (ragops status shows the nodes)",
                         hint="start the environment with `ragops up`, or fail over with `ragops db promote`")
        migrations = self.config.resolve_path(self.config.service.path) / "migrations"
        try:   # nothing has changed yet: an unreadable migration is a refusal, not an interrupted deploy
            pending = pending_migrations(node_dsn(self.config, primary.name), migrations)
            breaking = breaking_migrations(pending, migrations)
        except OperationFailed as exc:
            self._refuse(f"preflight: {exc.message}")
        live = self.record.get("from_color")
        if breaking:
            running = f"the live color {live} ({self.record.get('from_version')})" if live else "a running version"
            self._refuse(f"preflight: migration {breaking[0]} is marked breaking: {running} would stop being "
                         "ready on it and rollback could not flip back; use a maintenance window")
        if not pending:
            self.step("migrations", True, "schema up to date")
            return
        applied = self.change("migrate", lambda: migrate(self.config, self.progress), pending=list(pending))
        self.step("migrations", True, f"applied {', '.join(applied)} (expand-only, compatible with the live color)")
        checkpoint("journaled:migrate")
        state = self.platform.color_state(live, probe=True) if live else None
        if state is not None:   # the live color accepts newer non-breaking schemas: it must still be ready
            detail = f"{live} ready on the new schema" if state.ready else \
                f"{live} is not ready on the new schema ({state.detail}): a rollback will restart it"
            self.step("warm color after migration", True if state.ready else None, detail)

    def _refuse(self, message: str, hint: str | None = None) -> NoReturn:
        """Refuse in preflight, before anything changed: the message is journaled as the step that
        failed, so history records it as the reason (not the last step that passed)."""
        self.step("preflight", False, message)
        raise GateFailed(message, hint=hint)

    def start_new(self, color: str) -> None:
        """Start `color` with the version (unless this deploy already did), then its gates: readiness and
        smoke, each skipped only when recorded as passed."""
        version = self.options.version
        if self.ours(color):
            self.step(f"start {color}", True, f"already running {version} for this deploy (resumed)")
        else:
            self.forget_gates(color)
            self.phase("start", to_color=color)
            self.change("start", lambda: self.platform.start_color(
                color, version, deploy_id=self.record["id"], env=self.options.env, progress=self.progress),
                color=color, version=version)
            self.step(f"start {color}", True, f"{version} started")
            checkpoint("journaled:start")
        # a platform with several hosts (docker) gives one direct URL per host: each must pass
        targets = self.platform.color_urls(color)
        if not self.gate_passed(f"ready:{color}"):
            self._readiness(color, targets)
        if self.gate_passed(f"smoke:{color}"):
            self.step(f"smoke {color}", True, "passed before the interruption (journaled)")
            return
        self._smoke(color, targets)

    def _readiness(self, color: str, targets) -> None:
        from ragops.readiness import wait_ready

        try:
            took = max(wait_ready(self.platform, color, self.config.deploy.health_timeout, self.progress,
                                  url=url, where=where) for where, url in targets)
        except OperationFailed as exc:
            self.step(f"ready {color}", False, exc.message)
            self._discard(color)
            raise GateFailed(f"{self.options.version} never became ready on {color}: {exc.message}; "
                             f"traffic stayed on {self.record.get('from_color') or 'nothing'}") from None
        self.pass_gate(f"ready:{color}")
        self.step(f"ready {color}", True, f"{self.config.service.readiness_path} 200 after {took:.1f}s")

    def _smoke(self, color: str, targets) -> None:
        from ragops.smoke import run_smoke

        self.phase("smoke")
        for where, url in targets:
            report = run_smoke(self.config, url=url, color=color, platform=self.platform,
                               expect_version=self.options.version)
            if not report.passed:
                failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failed)
                failed = f"host {where}: {failed}" if where and len(targets) > 1 else failed
                self.step(f"smoke {color} (preview, no traffic yet)", False, failed)
                self._discard(color)
                raise GateFailed(f"smoke test of {self.options.version} on {color} failed: {failed}; "
                                 f"traffic stayed on {self.record.get('from_color') or 'nothing'}")
        self.pass_gate(f"smoke:{color}")
        self.step(f"smoke {color} (preview, no traffic yet)", True, f"{len(report.checks)} checks passed"
                  + (f" on each of {len(targets)} hosts" if len(targets) > 1 else ""))

    def _discard(self, color: str, drain_timeout: float = 5) -> None:
        self.change("stop", lambda: self.platform.stop_color(color, drain_timeout=drain_timeout,
                                                             progress=self.progress), color=color)
        self.step(f"stop {color}", True, "stopped")
        checkpoint("journaled:stop")

    def switch(self, weights: dict[str, int], label: str) -> float:
        shown = _shown(weights)
        if self.resumed and live_matches(self.platform.router_weights(), weights):
            self.step(label, True, f"{shown}: the router already serves these weights (read back from it)",
                      kind="switch", data={"weights": dict(weights), "ms": 0.0}, weights=weights)
            return 0.0
        self.report(Event("weights", f"{label}: setting router weights {shown}", {"weights": dict(weights)}))
        written_at = time.time()
        seconds = self.change("weights", lambda: self.platform.set_weights(weights), weights=dict(weights))
        self.record["switch_ms"] = round(seconds * 1000, 1)
        self.step(label, True, f"{shown} (router confirmed in {seconds * 1000:.0f}ms)",
                  kind="switch", data={"weights": dict(weights), "ms": self.record["switch_ms"]},
                  weights=weights, written_at=written_at)
        checkpoint("journaled:weights")
        return seconds

    def warm_check(self, color: str, version: str) -> str | None:
        """None when `color` runs `version` and every host's copy answers ready with that version
        (asked straight at its own address); else what is wrong, for the journal."""
        from ragops import loopback

        state = self.platform.color_state(color, probe=False)
        if not state.running:
            return "is not running"
        if state.version != version:
            return f"runs {state.version or 'an unknown version'}, not {version}"
        service = self.config.service
        with loopback.Client(timeout=1.5) as client:
            for where, url in self.platform.color_urls(color):
                at = f" on host {where}" if where else ""
                try:
                    ready = client.get(url + service.readiness_path)
                    if ready.status_code != 200:
                        return f"is not ready{at} ({service.readiness_path} -> {ready.status_code})"
                    answer = client.get(url + "/version")
                    said = answer.json().get("version") if answer.status_code == 200 else None
                except (loopback.HttpError, ValueError, AttributeError) as exc:
                    return f"does not answer{at} ({exc})"
                if said != version:
                    return f"answers version {said}{at}, not {version}"
        return None

    def drain(self, color: str) -> None:
        """Keep the old color warm (nothing to wait for: it is not stopped, and what it has in flight
        finishes), or wait until it has no request in flight and stop it (deploy.keep_previous 0)."""
        if self.config.deploy.keep_previous >= 1:
            self.step(f"drain {color}", True, "kept warm for instant rollback (not stopped: its requests in "
                                              "flight finish)")
            return
        from ragops.deploy.analysis import in_flight

        deadline = time.monotonic() + self.config.deploy.drain_timeout
        for _, url in self.platform.color_urls(color):
            while time.monotonic() < deadline:
                if not in_flight(url):
                    break
                time.sleep(0.1)
        self._discard(color, drain_timeout=self.config.deploy.drain_timeout)
        self.step(f"drain {color}", True, "no request in flight; stopped (deploy.keep_previous is 0)")

    def overridden(self) -> dict | None:
        request = self.journal.pending_request() or {}
        return request if request.get("action") == oplock.FORCED else None

    def check_not_overridden(self) -> None:
        """A command run with --force while this deploy held the lock (down --force) stopped what
        it works on: fail at once, saying so, instead of reading numbers from stopped processes."""
        request = self.overridden()
        if request:
            raise OperationFailed(f"the environment was changed under this deploy by {request.get('by')} "
                                  "(the stack it deploys to may be stopped)")

    def aborted_by_request(self) -> bool:
        return (self.journal.pending_request() or {}).get("action") == "abort"
