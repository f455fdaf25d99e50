"""Blue-green and canary deploys, rollback, promote and abort, over the Platform protocol.

The invariant that makes a kill -9 harmless: the router only ever points at a color that passed
readiness and the smoke suite, and the previous color keeps running until the new one has passed
its analysis. Every phase is written to the journal before it starts.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

from ragops.config import Config
from ragops.deploy.analysis import AnalysisResult, analyze, in_flight
from ragops.deploy.history import Journal, now_iso
from ragops.deploy.lock import DeployLock, describe, owner_alive, whoami
from ragops.durations import format_duration
from ragops.errors import GateFailed, LockHeld, OperationFailed, UsageError
from ragops.events import Event, Progress, ignore, say
from ragops.platforms import get_platform
from ragops.platforms.base import other_color

# the sections whose secret references a deploy or rollback resolves (service keys, database password/DSN)
NEEDED_SECRETS = ("service", "database")


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


@dataclass
class DeployOptions:
    version: str
    strategy: str
    steps: list[int]
    step_pause: float
    pause_at: int | None = None
    env: dict[str, str] = field(default_factory=dict)


class Deployment:
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
            "started": now_iso(), "phase": "lock", "steps": [],
            "options": {"steps": options.steps, "step_pause": options.step_pause,
                        "pause_at": options.pause_at, "env": options.env},
        }
        self.lock = DeployLock(self.platform.lock_backend(), config.deploy.lock_ttl, command,
                               deploy_id=self.record["id"])
        self.started = time.monotonic()

    # ---- bookkeeping -----------------------------------------------------------------------
    def phase(self, name: str, **extra) -> None:
        self.record["phase"] = name
        self.record.update(extra)
        self.journal.save(self.record)
        self.report(Event("phase", f"phase: {name}", {"phase": name, "deploy_id": self.record["id"]}))

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

    def finish(self, result: str, reason: str | None = None) -> DeployResult:
        self.record.update(result=result, reason=reason, ended=now_iso(),
                           seconds=round(time.monotonic() - self.started, 2))
        self.record.pop("phase", None)
        self.journal.finish(self.record, limit=self.config.deploy.history_limit)
        r = self.record
        self.report(Event("done", f"deploy {r['id']} {result}" + (f": {reason}" if reason else ""),
                            {"id": r["id"], "result": result, "reason": reason, "seconds": r["seconds"]}))
        return self.result()

    def result(self) -> DeployResult:
        r = self.record
        return DeployResult(id=r["id"], version=r["version"], strategy=r["strategy"],
                            result=r.get("result", "in progress"), from_version=r.get("from_version"),
                            from_color=r.get("from_color"), to_color=r.get("to_color"), reason=r.get("reason"),
                            switch_ms=r.get("switch_ms"), seconds=r.get("seconds", 0.0), steps=r["steps"])

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
        from ragops.db.migrate import breaking_migrations, pending_migrations

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
        applied = migrate(self.config, self.progress)
        self.step("migrations", True, f"applied {', '.join(applied)} (expand-only, compatible with the live color)")
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
        state = self.platform.color_state(color, probe=True)
        if state and state.running and state.version == self.options.version and state.ready \
                and state.deploy_id == self.record["id"]:
            self.step(f"start {color}", True, f"already running {self.options.version} (resumed)")
            return
        self.phase("start", to_color=color)
        self.platform.start_color(color, self.options.version, deploy_id=self.record["id"],
                                  env=self.options.env, progress=self.progress)
        from ragops.readiness import wait_ready

        # a platform with several hosts (docker) gives one direct URL per host: each must pass
        targets = self.platform.color_urls(color)
        try:
            took = max(wait_ready(self.platform, color, self.config.deploy.health_timeout, self.progress,
                                  url=url, where=where) for where, url in targets)
        except OperationFailed as exc:
            self.step(f"ready {color}", False, exc.message)
            self._discard(color)
            raise GateFailed(f"{self.options.version} never became ready on {color}: {exc.message}; "
                             f"traffic stayed on {self.record.get('from_color') or 'nothing'}") from None
        self.step(f"ready {color}", True, f"{self.config.service.readiness_path} 200 after {took:.1f}s")
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
        self.step(f"smoke {color} (preview, no traffic yet)", True, f"{len(report.checks)} checks passed"
                  + (f" on each of {len(targets)} hosts" if len(targets) > 1 else ""))

    def _discard(self, color: str) -> None:
        self.platform.stop_color(color, drain_timeout=5, progress=self.progress)

    def switch(self, weights: dict[str, int], label: str) -> float:
        shown = ", ".join(f"{c} {w}%" for c, w in sorted(weights.items()))
        self.report(Event("weights", f"{label}: setting router weights {shown}", {"weights": dict(weights)}))
        written_at = time.time()
        seconds = self.platform.set_weights(weights)
        self.record["switch_ms"] = round(seconds * 1000, 1)
        self.step(label, True, f"{shown} (router confirmed in {seconds * 1000:.0f}ms)",
                  kind="switch", data={"weights": dict(weights), "ms": self.record["switch_ms"]},
                  weights=weights, written_at=written_at)
        return seconds

    def watch(self, color: str, window: float, label: str) -> AnalysisResult:
        a = self.config.deploy.analysis
        limits = {"color": color, "window_s": window, "max_error_rate": a.max_error_rate,
                  "max_p95_ms": a.max_p95_latency_ms}
        self.report(Event("analysis", f"analysing {color} for {format_duration(window)} "
                                        f"(max error rate {a.max_error_rate:.0%}, max p95 {a.max_p95_latency_ms:.0f}ms)",
                            limits))

        def on_sample(r: AnalysisResult) -> None:
            if r.requests:
                self.report(Event("analysis", f"  {color}: {r.requests} req, errors {r.error_rate or 0:.1%}, "
                                                f"p95 {r.p95_ms or 0:.0f}ms, {r.window_s:.0f}/{window:.0f}s",
                                    {**limits, "requests": r.requests, "error_rate": r.error_rate,
                                     "p95_ms": r.p95_ms, "elapsed_s": r.window_s}))

        result = analyze(color, self.platform.color_url(color), window=window,
                         max_error_rate=a.max_error_rate, max_p95_ms=a.max_p95_latency_ms,
                         min_requests=a.min_requests, no_data_retries=a.no_data_retries,
                         probe_rps=a.probe_rps, interval=a.interval, on_sample=on_sample,
                         should_stop=lambda: (self.journal.pending_request() or {}).get("action") == "abort")
        self.step(label, result.passed, "; ".join(result.breaches) or "within thresholds",
                  data={"analysis": result.summary()}, analysis=result.summary())
        return result

    def drain(self, color: str) -> None:
        """Wait until the old color has no request in flight, then keep it warm or stop it."""
        deadline = time.monotonic() + self.config.deploy.drain_timeout
        urls = [url for _, url in self.platform.color_urls(color)]
        for url in urls:
            while time.monotonic() < deadline:
                count = in_flight(url)
                if not count:
                    break
                time.sleep(0.1)
        if self.config.deploy.keep_previous >= 1:
            self.step(f"drain {color}", True, "no request in flight; kept warm for instant rollback")
        else:
            self.platform.stop_color(color, drain_timeout=self.config.deploy.drain_timeout, progress=self.progress)
            self.step(f"drain {color}", True, "no request in flight; stopped (deploy.keep_previous is 0)")

    def aborted_by_request(self) -> bool:
        return (self.journal.pending_request() or {}).get("action") == "abort"

    # ---- strategies -----------------------------------------------------------------------
    def blue_green(self) -> DeployResult:
        new = self.record["to_color"]
        old = self.record.get("from_color")
        resumed_after_switch = self.record.get("phase") in ("switched", "analysis")
        if not resumed_after_switch:
            self.start_new(new)
            self.phase("switched")
            self.switch({new: 100, **({old: 0} if old else {})}, f"switch router to {new}")
        self.phase("analysis")
        result = self.watch(new, self.config.deploy.analysis.window, f"analysis of {new} (post-switch)")
        if not result.passed:
            reason = "; ".join(result.breaches)
            if old:
                self.switch({old: 100, new: 0}, f"switch back to {old}")
                self._discard(new)
                self.finish("rolled_back", reason)
                raise GateFailed(f"{self.options.version} rolled back automatically: {reason}",
                                 hint="ragops status --explain shows the measured values")
            self.finish("failed", reason)
            raise GateFailed(f"{self.options.version} failed its analysis and there is no previous color: {reason}")
        if old:
            self.drain(old)
        return self.finish("succeeded")

    def canary(self) -> DeployResult:
        new = self.record["to_color"]
        old = self.record.get("from_color")
        if old is None:
            self.step("canary", None, "first deploy: no live color to split with, promoting directly")
            self.start_new(new)
            self.switch({new: 100}, f"route 100% to {new}")
            return self.finish("succeeded")
        start_index = int(self.record.get("step_index", 0))
        if start_index == 0 and self.record.get("phase") not in ("canary-step",):
            self.start_new(new)
        steps = self.options.steps
        window = self.options.step_pause or self.config.deploy.analysis.window
        for index in range(start_index, len(steps)):
            weight = steps[index]
            self.phase("canary-step", step_index=index)
            if self.aborted_by_request():
                return self._abort_canary(new, old, "aborted on request")
            if weight >= 100:
                break
            self.switch({new: weight, old: 100 - weight}, f"canary {new} at {weight}%")
            result = self.watch(new, window, f"analysis at {weight}%")
            if self.aborted_by_request():
                return self._abort_canary(new, old, "aborted on request")
            if not result.passed:
                reason = f"at {weight}%: " + "; ".join(result.breaches)
                self._abort_canary(new, old, reason)
                raise GateFailed(f"canary {self.options.version} aborted {reason}",
                                 hint="the live color was not touched; ragops status --explain shows the values")
            if self.options.pause_at is not None and weight == self.options.pause_at:
                self.phase("paused", step_index=index + 1)
                self.step(f"paused at {weight}%", None, "continue with `ragops promote`, undo with `ragops abort`")
                self.lock.pause()
                self.record["result"] = "paused"
                return self.result()
        self.phase("promote", step_index=len(steps))
        self.switch({new: 100, old: 0}, f"promote {new} to 100%")
        self.drain(old)
        return self.finish("succeeded")

    def _abort_canary(self, new: str, old: str, reason: str) -> DeployResult:
        self.switch({old: 100, new: 0}, f"canary weight back to 0, {old} 100%")
        self._discard(new)
        self.journal.clear_request()
        return self.finish("aborted", reason)

    def take_lock(self, take_over: str | None = None) -> None:
        """The deploy lock; a dead owner's lock that no journal explains is taken over and recorded."""
        current = self.journal.current()
        self.lock.acquire(take_over_deploy=take_over, journaled=current.get("id") if current else None)
        if self.lock.taken_over:
            stale = self.lock.taken_over
            self.journal.audit("stale lock taken over", by=whoami(), lock=stale)
            self.progress(f"took over a stale deploy lock of {describe(stale)}: its owner is gone and "
                          "it left no deploy journal")

    def run(self, take_over: bool = False) -> DeployResult:
        self.take_lock(take_over=self.record["id"] if take_over else None)
        paused = False
        try:
            self.journal.save(self.record)
            if self.record.get("phase") in (None, "lock", "preflight"):
                self.preflight()
            if self.options.strategy == "canary":
                result = self.canary()
                paused = result.result == "paused"
                return result
            return self.blue_green()
        except GateFailed:
            if "result" not in self.record or self.record.get("result") in (None, "paused"):
                self.finish("failed", self.record["steps"][-1]["detail"] if self.record["steps"] else None)
            raise
        except OperationFailed as exc:
            self.step("error", False, exc.message)
            self.record["phase_failed"] = self.record.get("phase")
            self.journal.save(self.record)
            raise OperationFailed(f"deploy {self.record['id']} stopped at {self.record.get('phase')}: {exc.message}",
                                  hint="the router still points at a color that passed its checks; "
                                       "`ragops deploy --resume` retries, `ragops abort` undoes") from None
        finally:
            if not paused:
                self.lock.release()


# ---- module-level operations (the CLI and runbooks call these) --------------------------------

def _options(config: Config, version: str, strategy: str | None, steps: list[int] | None,
             step_pause: float | None, pause_at: int | None, env: dict | None) -> DeployOptions:
    strategy = strategy or config.deploy.strategy
    if strategy not in ("blue-green", "canary"):
        raise UsageError(f"--strategy: expected blue-green or canary, got {strategy!r}")
    steps = steps or list(config.deploy.canary.steps)
    for weight in steps:
        if not 1 <= weight <= 100:
            raise UsageError(f"--steps: weight {weight} is outside 1..100")
    if steps != sorted(set(steps)):
        raise UsageError(f"--steps: weights must increase, got {','.join(map(str, steps))}")
    if steps[-1] != 100:
        steps = steps + [100]
    if pause_at is not None and pause_at not in steps[:-1]:
        raise UsageError(f"--pause-at: {pause_at} is not one of the canary steps below 100 ({','.join(map(str, steps[:-1]))})")
    if pause_at is not None and strategy != "canary":
        raise UsageError("--pause-at only applies to --strategy canary")
    return DeployOptions(version=version, strategy=strategy, steps=steps,
                         step_pause=config.deploy.canary.step_pause if step_pause is None else step_pause,
                         pause_at=pause_at, env=dict(env or {}))


def plan(config: Config, version: str, strategy: str | None = None, steps: list[int] | None = None,
         step_pause: float | None = None, pause_at: int | None = None, env: dict | None = None) -> DeployResult:
    """The ordered steps with effective timeouts and gates; changes nothing."""
    opts = _options(config, version, strategy, steps, step_pause, pause_at, env)
    config.resolve_references(*NEEDED_SECRETS)   # the plan fails exactly where the deploy would
    platform = get_platform(config)
    d = config.deploy
    live = [c for c in platform.colors() if c.weight > 0]
    live_color = max(live, key=lambda c: c.weight) if live else None
    new = other_color(live_color.color) if live_color else "blue"
    a = d.analysis
    gates = (f"error rate <= {a.max_error_rate:.0%}, p95 <= {a.max_p95_latency_ms:.0f}ms, "
             f">= {a.min_requests} requests (no data: {a.no_data_retries} retries, then fail)")
    lines = [f"take the deploy lock (lease {format_duration(d.lock_ttl)}, heartbeat)",
             f"preflight: live color {live_color.color + ' ' + str(live_color.version) if live_color else 'none (first deploy)'} healthy; "
             "pending migrations must not be marked breaking",
             f"start {new} with {version}" + (f" (env {', '.join(opts.env)})" if opts.env else ""),
             f"wait for {config.service.readiness_path} (timeout {format_duration(d.health_timeout)})",
             f"smoke-test {new} directly before it gets traffic"]
    if opts.strategy == "blue-green":
        lines += [f"switch the router: {new} 100%",
                  f"analysis of {new} for {format_duration(a.window)}: {gates}; on a breach switch back",
                  f"drain {live_color.color if live_color else '-'} (in-flight 0, up to {format_duration(d.drain_timeout)}), "
                  + ("keep it warm for rollback" if d.keep_previous else "then stop it")]
    else:
        for weight in opts.steps[:-1]:
            lines.append(f"canary {new} at {weight}%, analysis for {format_duration(opts.step_pause or a.window)}: {gates}; "
                         "on a breach weight back to 0 and stop the canary"
                         + ("; then PAUSE until `ragops promote`" if weight == opts.pause_at else ""))
        lines.append(f"promote {new} to 100%, drain the old color")
    return DeployResult(id="plan", version=version, strategy=opts.strategy, result="planned",
                        from_version=live_color.version if live_color else None,
                        from_color=live_color.color if live_color else None, to_color=new, plan=lines)


def deploy(config: Config, version: str, strategy: str | None = None, steps: list[int] | None = None,
           step_pause: float | None = None, pause_at: int | None = None, env: dict | None = None,
           progress: Progress = ignore) -> DeployResult:
    opts = _options(config, version, strategy, steps, step_pause, pause_at, env)
    config.resolve_references(*NEEDED_SECRETS)   # before anything is stopped or written
    platform = get_platform(config)
    interrupted = Journal(platform.journal_dir()).current()
    if interrupted:
        lock = platform.lock_backend().read() or {}
        if not lock or not owner_alive(lock) or lock.get("paused"):
            state = "is paused" if lock.get("paused") else f"was interrupted at phase {interrupted.get('phase')}"
            raise LockHeld(f"deploy {interrupted['id']} of {interrupted['version']} {state}",
                           hint="finish it with `ragops deploy --resume` (or `ragops promote` when paused), "
                                "or undo it with `ragops abort`")
    return Deployment(config, opts, progress, platform).run()


def _journaled(config: Config, progress: Progress, command: str) -> Deployment:
    platform = get_platform(config)
    record = Journal(platform.journal_dir()).current()
    if not record:
        raise UsageError("no deploy is in progress, paused or interrupted (ragops history shows past ones)")
    o = record.get("options", {})
    opts = DeployOptions(version=record["version"], strategy=record["strategy"], steps=o.get("steps") or [100],
                         step_pause=o.get("step_pause") or 0, pause_at=o.get("pause_at"), env=o.get("env") or {})
    return Deployment(config, opts, progress, platform, record=record, command=command)


def resume(config: Config, progress: Progress = ignore) -> DeployResult:
    """Finish an interrupted deploy from its journal (the lock of a dead owner is taken over)."""
    deployment = _journaled(config, progress, "ragops deploy --resume")
    lock = deployment.platform.lock_backend().read()
    if lock and owner_alive(lock) and not lock.get("paused"):
        raise LockHeld(f"deploy {deployment.record['id']} is still running: {describe(lock)}")
    say(progress, f"resuming {deployment.record['id']} at phase {deployment.record.get('phase')}")
    return deployment.run(take_over=True)


def promote(config: Config, progress: Progress = ignore) -> DeployResult:
    """Continue a canary paused with --pause-at through its remaining steps."""
    deployment = _journaled(config, progress, "ragops promote")
    if deployment.record.get("phase") != "paused":
        raise UsageError(f"deploy {deployment.record['id']} is not paused (phase {deployment.record.get('phase')}); "
                         "nothing to promote")
    deployment.step("promote requested", None, f"by {whoami()}")
    deployment.record["phase"] = "canary-step"
    deployment.options.pause_at = None
    return deployment.run(take_over=True)


def abort(config: Config, progress: Progress = ignore, wait: float = 30.0) -> DeployResult:
    """Undo the deploy in progress: traffic back to the live color, the new color stopped."""
    platform = get_platform(config)
    journal = Journal(platform.journal_dir())
    record = journal.current()
    lock = platform.lock_backend().read() or {}
    if not record and lock and not owner_alive(lock):
        # killed after taking the lock but before writing its journal: nothing to undo, only the lock
        platform.lock_backend().delete(lock.get("token"))
        journal.audit("stale lock cleared", by=whoami(), lock=lock)
        say(progress, f"cleared the stale deploy lock of {describe(lock)} (no deploy journal: nothing to undo)")
        return DeployResult(id=lock.get("deploy_id") or "lock", version="-", strategy="abort", result="aborted",
                            reason="stale lock cleared; no deploy had started")
    if not record:
        raise UsageError("no deploy is in progress, paused or interrupted; nothing to abort")
    if lock and owner_alive(lock) and not lock.get("paused"):
        # a live deploy in another process: ask it to abort and wait for it to finish
        journal.request("abort", whoami())
        say(progress, f"asked deploy {record['id']} (pid {lock.get('pid')}) to abort; waiting")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and journal.current():
            time.sleep(0.2)
        if journal.current():
            raise OperationFailed(f"deploy {record['id']} did not abort within {wait:.0f}s")
        last = [r for r in journal.history() if r.get("id") == record["id"]]
        return _from_record(last[-1] if last else record)
    deployment = _journaled(config, progress, "ragops abort")
    deployment.take_lock(take_over=record["id"])
    try:
        old, new = record.get("from_color"), record.get("to_color")
        if old:
            deployment.switch({old: 100, new: 0}, f"traffic back to {old}")
        if new and new != old:
            deployment._discard(new)
        return deployment.finish("aborted", f"aborted by {whoami()}")
    finally:
        deployment.lock.release()


def _from_record(r: dict) -> DeployResult:
    return DeployResult(id=r["id"], version=r["version"], strategy=r["strategy"], result=r.get("result", "?"),
                        from_version=r.get("from_version"), from_color=r.get("from_color"),
                        to_color=r.get("to_color"), reason=r.get("reason"), seconds=r.get("seconds", 0),
                        steps=r.get("steps", []))


def rollback(config: Config, to_version: str | None = None, progress: Progress = ignore) -> DeployResult:
    """Back to the previous version: a router flip when its color is still warm, else a blue-green
    deploy of that version."""
    config.resolve_references(*NEEDED_SECRETS)
    platform = get_platform(config)
    journal = Journal(platform.journal_dir())
    if journal.current():
        raise UsageError("a deploy is in progress or interrupted: use `ragops abort` instead of rollback")
    states = {c.color: c for c in platform.colors()}
    live = max(states.values(), key=lambda c: c.weight)
    if live.weight == 0:
        raise UsageError("no color serves traffic; nothing to roll back from")
    if to_version is None:
        done = [r for r in journal.history() if r.get("result") == "succeeded" and r.get("version") == live.version
                and r.get("from_version")]
        if not done:
            raise UsageError(f"no previous version is recorded for {live.version}; use --to VERSION")
        to_version = done[-1]["from_version"]
    warm = states[other_color(live.color)]
    _check_rollback_target(to_version, journal.history(), warm)
    deployment = Deployment(config, DeployOptions(version=to_version, strategy="rollback", steps=[100], step_pause=0),
                            progress, platform, command="ragops rollback")
    deployment.record.update(from_color=live.color, from_version=live.version, to_color=warm.color)
    deployment.take_lock()
    try:
        if warm.running and warm.ready and warm.version == to_version:
            started = time.monotonic()
            deployment.switch({warm.color: 100, live.color: 0}, f"flip router to warm {warm.color} ({to_version})")
            deployment.record["flip_ms"] = round((time.monotonic() - started) * 1000, 1)
        else:
            deployment.step("warm color", None, f"{warm.color} is not running {to_version}: starting it")
            deployment.start_new(warm.color)
            started = time.monotonic()
            deployment.switch({warm.color: 100, live.color: 0}, f"switch router to {warm.color} ({to_version})")
            deployment.record["flip_ms"] = round((time.monotonic() - started) * 1000, 1)
        deployment.drain(live.color)
        return deployment.finish("succeeded")
    finally:
        deployment.lock.release()


def _check_rollback_target(version: str, records: list[dict], warm) -> None:
    """A rollback goes back to something that ran here before; anything else is a deploy."""
    known = {r.get(key) for r in records if r.get("result") == "succeeded" for key in ("version", "from_version")}
    known.discard(None)
    if warm.running and warm.version:
        known.add(warm.version)
    if version not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise UsageError(f"--to {version}: that version never ran in this environment (known: {listed})",
                         hint=f"a new version is a deploy: ragops deploy --version {version}")


def history(config: Config, limit: int = 20) -> list[dict]:
    platform = get_platform(config)
    return [r for r in Journal(platform.journal_dir()).history() if "version" in r or "event" in r][-limit:]


def break_lock(config: Config) -> dict | None:
    platform = get_platform(config)
    backend = platform.lock_backend()
    current = backend.read()
    if current is None:
        return None
    backend.delete()
    Journal(platform.journal_dir()).audit("lock broken", by=whoami(), lock=current)
    return current
