"""Blue-green and canary deploys, rollback, promote and abort, over the Platform protocol.

The invariant that makes a kill -9 harmless: the router only ever points at a color that passed
readiness and the smoke suite, and the previous color keeps running until the new one has passed
its analysis. Every phase is journaled before it starts, every external change is journaled as an
intent before it and as a result after it, and resume reconciles with the platform first. The
state machine (each phase, what is true before and after it, what resume and abort do from it) is
written down in ragops/deploy/states.py.
"""
from __future__ import annotations

import time

from ragops import golden
from ragops.config import Config
from ragops.deploy import shadow
from ragops.deploy.analysis import AnalysisResult, Target, get_provider
from ragops.deploy.deployment import DeploymentBase, DeployOptions, DeployResult
from ragops.deploy.history import Journal
from ragops.deploy.lock import DeployLock, describe, owner_alive, whoami
from ragops.deploy.oplock import acquire as acquire_lock
from ragops.deploy.states import checkpoint, interrupted_text, next_step
from ragops.deploy.states import unfinished_kind as _kind
from ragops.durations import format_duration
from ragops.errors import GateFailed, LockHeld, OperationFailed, RagopsError, UsageError
from ragops.events import Event, Progress, ignore, say
from ragops.platforms import get_platform
from ragops.platforms.base import COLORS, other_color, with_weights


class AnalysisInconclusive(GateFailed):
    """A canary step's analysis had no verdict: the deploy is paused at that weight (exit 3)."""


# the sections whose secret references a deploy or rollback resolves (service keys, database password/DSN)
NEEDED_SECRETS = ("service", "database")


class Deployment(DeploymentBase):
    """The strategies: blue-green, canary and rollback, each idempotent against the platform on resume."""

    def watch(self, color: str, window: float, label: str, gate: str | None = None,
              baseline: str | None = None) -> AnalysisResult:
        """`baseline`: the stable color sharing the traffic (canary steps), for `compare: baseline` metrics."""
        if gate and self.gate_passed(gate):
            self.step(label, True, "passed before the interruption (journaled)")
            return AnalysisResult(color=color, passed=True, requests=0, window_s=0.0)
        a = self.config.deploy.analysis
        provider = get_provider(self.config)
        limits = {"color": color, "window_s": window, "max_error_rate": a.max_error_rate,
                  "max_p95_ms": a.max_p95_latency_ms, "provider": provider.name}
        self.report(Event("analysis", f"analysing {color} for {format_duration(window)} ({provider.describe()})",
                          limits))

        def on_sample(r: AnalysisResult) -> None:
            if r.metrics:
                shown = ", ".join(f"{m['name']} {m['value']}" + (f" (stable {m['baseline']})"
                                                                  if m.get("baseline") is not None else "")
                                  for m in r.metrics)
                self.report(Event("analysis", f"  {color}: {shown}, {r.window_s:.0f}/{window:.0f}s",
                                  {**limits, "metrics": r.metrics, "elapsed_s": r.window_s}))
            elif r.requests:
                retrieval = "" if r.empty_rate is None else f", no result {r.empty_rate:.0%} of {r.queries} queries"
                self.report(Event("analysis", f"  {color}: {r.requests} req, errors {r.error_rate or 0:.1%}, "
                                              f"p95 {r.p95_ms or 0:.0f}ms{retrieval}, {r.window_s:.0f}/{window:.0f}s",
                                  {**limits, "requests": r.requests, "error_rate": r.error_rate,
                                   "p95_ms": r.p95_ms, "elapsed_s": r.window_s}))

        stable = baseline or self.record.get("from_color")    # blue-green: the warm previous color
        target = Target(color=color, version=self.options.version, url=self.platform.color_url(color),
                        baseline_color=baseline, baseline_version=str(self.record.get("from_version") or ""),
                        extra={"stable_url": self.platform.color_url(stable)} if stable and stable != color else {})
        result = provider.analyze(target, window=window, on_sample=on_sample,
                                  should_stop=lambda: self.aborted_by_request() or self.overridden())
        self.check_not_overridden()
        if gate and result.passed:
            self.pass_gate(gate)
        # an inconclusive analysis is not a failed one: journaled and printed without a verdict
        self.step(label, None if result.inconclusive else result.passed,
                  "; ".join(result.breaches) or "within thresholds",
                  data={"analysis": result.summary()}, analysis=result.summary())
        return result

    def check_scraped(self, color: str) -> None:
        """Before the first traffic change: the analysis must be able to read the new color's metrics
        (a Prometheus that does not scrape it would measure nothing)."""
        gate = f"scraped:{color}"
        if self.gate_passed(gate):
            return
        ok, seen = get_provider(self.config).check_scraped(Target(color=color, version=self.options.version))
        if not seen:
            return
        self.step(f"metrics of {color}", ok, seen)
        if not ok:
            self._discard(color)
            raise GateFailed(f"{seen}; traffic stayed on {self.record.get('from_color') or 'nothing'}",
                             hint="check the scrape configuration of monitoring.url for this color "
                                  "(labels color and the service's /metrics)")
        self.pass_gate(gate)

    # ---- strategies -----------------------------------------------------------------------
    def blue_green(self) -> DeployResult:
        new = self.record["to_color"]
        old = self.record.get("from_color")
        if self.record.get("failing"):
            return self._switch_back(new, old, self.record["failing"])     # resumed inside a switch-back
        self.start_new(new)
        self.check_scraped(new)
        self.phase("switched")
        self.switch({new: 100, **({old: 0} if old else {})}, f"switch router to {new}")
        self.phase("analysis")
        result = self.watch(new, self.config.deploy.analysis.window, f"analysis of {new} (post-switch)",
                            gate=f"analysis:{new}@100")
        if not result.passed:
            return self._switch_back(new, old, "; ".join(result.breaches))
        if old:
            self.phase("drain")
            self.drain(old)
        return self.finish("succeeded")

    def _switch_back(self, new: str, old: str | None, reason: str) -> DeployResult:
        """The new color failed its analysis after taking traffic: back to the old one, stop the new."""
        self.record["failing"] = reason
        if not old:
            self.finish("failed", reason)
            raise GateFailed(f"{self.options.version} failed its analysis and there is no previous color: {reason}")
        self.switch({old: 100, new: 0}, f"switch back to {old}")
        self._discard(new)
        self.finish("rolled_back", reason)
        raise GateFailed(f"{self.options.version} rolled back automatically: {reason}",
                         hint="ragops status --explain shows the measured values")

    def canary(self) -> DeployResult:
        new = self.record["to_color"]
        old = self.record.get("from_color")
        if old is None:
            self.step("canary", None, "first deploy: no live color to split with, promoting directly")
            self.start_new(new)
            self.switch({new: 100}, f"route 100% to {new}")
            return self.finish("succeeded")
        if self.record.get("failing"):
            return self._switch_back(new, old, self.record["failing"])
        self.start_new(new)
        self.check_scraped(new)
        steps = self.options.steps
        window = self.options.step_pause or self.config.deploy.analysis.window
        for index in range(int(self.record.get("step_index", 0)), len(steps)):
            weight = steps[index]
            self.phase("canary-step", step_index=index)
            if self.aborted_by_request():
                return self._abort_canary(new, old, "aborted on request")
            if weight >= 100:
                break
            self.switch({new: weight, old: 100 - weight}, f"canary {new} at {weight}%")
            result = self.watch(new, window, f"analysis at {weight}%", gate=f"analysis:{new}@{weight}", baseline=old)
            if self.aborted_by_request():
                return self._abort_canary(new, old, "aborted on request")
            if result.inconclusive and self.options.on_inconclusive == "pause":
                self._pause(index, weight, "; ".join(result.breaches))
                raise AnalysisInconclusive(f"canary {self.options.version} paused at {weight}%: "
                                           + "; ".join(result.breaches),
                                           hint="`ragops promote` continues, `ragops abort` undoes")
            if not result.passed:
                reason = f"at {weight}%: " + "; ".join(result.breaches)
                self._abort_canary(new, old, reason, event="failed")
                raise GateFailed(f"canary {self.options.version} aborted {reason}",
                                 hint="the live color was not touched; ragops status --explain shows the values")
            if self.options.pause_at is not None and weight == self.options.pause_at:
                return self._pause(index, weight)
        self.phase("promote", step_index=len(steps))
        self.switch({new: 100, old: 0}, f"promote {new} to 100%")
        # the last step is analysed like any other: at 100 % a breach switches back to the old color
        result = self.watch(new, self.config.deploy.analysis.window, "analysis at 100%", gate=f"analysis:{new}@100")
        if not result.passed:
            return self._switch_back(new, old, "at 100%: " + "; ".join(result.breaches))
        self.phase("drain")
        self.drain(old)
        return self.finish("succeeded")

    def _pause(self, index: int, weight: int, why: str = "") -> DeployResult:
        self.phase("paused", step_index=index + 1)
        self.step(f"paused at {weight}%", None, (f"{why}; " if why else "")
                  + "continue with `ragops promote`, undo with `ragops abort`")
        self.lock.pause()
        self.record["result"] = "paused"
        self.notify("paused", why or f"at {weight}%")
        return self.result()

    def _abort_canary(self, new: str, old: str, reason: str, event: str | None = None) -> DeployResult:
        self.switch({old: 100, new: 0}, f"canary weight back to 0, {old} 100%")
        self._discard(new)
        self.journal.clear_request()
        return self.finish("aborted", reason, event=event)

    def rollback_flow(self) -> DeployResult:
        """Back to the version on the warm color: flip, or start it first when it is not warm.
        Resumed, it finishes the rollback (never a preflight or a deploy onto the other color)."""
        new, old = self.record["to_color"], self.record["from_color"]
        version = self.options.version
        not_warm = self.warm_check(new, version)   # only the color switched to is probed
        if not_warm is None:
            self.step("warm color", True, f"{new} runs {version} and is ready")
        else:
            self.step("warm color", None, f"{new} {not_warm}: starting it")
            self.start_new(new)
        self.phase("flip")
        started = time.monotonic()
        self.switch({new: 100, old: 0}, f"flip router to warm {new} ({version})")
        self.record["flip_ms"] = round((time.monotonic() - started) * 1000, 1)
        self.outbox.release()      # the flip is confirmed: its `start` goes out now
        self.phase("drain")
        self.drain(old)
        return self.finish("succeeded")

    def interrupted(self) -> None:
        """Ctrl-C (SIGINT): journal where it stopped and say what to run next; run() then releases
        the lock and lets the interrupt through (exit 130). Nothing else is changed."""
        current = self.journal.current()
        if current is None or current.get("id") != self.record["id"]:    # not journaled yet, or finished
            ended = self.record.get("result")
            text = (f"interrupted (Ctrl-C) after deploy {self.record['id']} ended ({ended}): nothing to resume"
                    if ended else interrupted_text(None))
            self.report(Event("interrupted", text, {"deploy_id": self.record["id"]}))
            return
        self.step("interrupted", None, interrupted_text(self.record), kind="interrupted")

    def run(self, take_over: bool = False) -> DeployResult:
        """The deploy, then (lock released) at most notify.timeout for its queued notifications."""
        outcomes: list[dict] = []
        try:
            result = self._run(take_over)
        except RagopsError as exc:     # the error names what was not delivered (it is all -q shows)
            outcomes = self.deliver_notifications()
            if any(not o["delivered"] for o in outcomes):
                exc.message += "; " + _undelivered(outcomes)
            raise
        except KeyboardInterrupt:
            raise       # Ctrl-C: no wait for a webhook on the way out
        except BaseException:
            self.deliver_notifications()
            raise
        result.notifications = outcomes or self.deliver_notifications()
        return result

    def _run(self, take_over: bool = False) -> DeployResult:
        self.take_lock(take_over=self.record["id"] if take_over else None)
        paused = False
        try:
            checkpoint("lock-taken")     # inside the try: a Ctrl-C here still releases the lock
            self.journal.save(self.record)
            if take_over:
                self.reconcile()
            if self.options.strategy == "rollback":
                if not take_over:
                    self.notify("start")
                return self.rollback_flow()
            if self.record.get("phase") in (None, "lock", "preflight"):
                self.preflight()
                self.notify("start")       # after preflight: it names the version it replaces
            if self.options.strategy == "canary":
                result = self.canary()
                paused = result.result == "paused"
                return result
            if self.options.strategy == shadow.STRATEGY:
                return shadow.run(self)
            return self.blue_green()
        except AnalysisInconclusive:
            paused = True      # the lock stays, marked paused: promote or abort goes on from here
            raise
        except GateFailed:
            if "result" not in self.record or self.record.get("result") in (None, "paused"):
                self.finish("failed", self.record["steps"][-1]["detail"] if self.record["steps"] else None)
            forced = self.overridden()
            if forced:     # the gate failed because a --force command stopped what it checked: say so
                raise OperationFailed(f"deploy {self.record['id']} failed: the environment was changed under "
                                      f"this deploy by {forced.get('by')}") from None
            raise
        except KeyboardInterrupt:
            self.interrupted()
            raise
        except OperationFailed as exc:
            self.step("error", False, exc.message)
            self.record["phase_failed"] = self.record.get("phase")
            self.journal.save(self.record)
            self.notify("failed", f"stopped at {self.record.get('phase')}: {exc.message}")
            raise OperationFailed(f"deploy {self.record['id']} stopped at {self.record.get('phase')}: {exc.message}",
                                  hint="the router still points at a color that passed its checks; "
                                       "`ragops deploy --resume` retries, `ragops abort` undoes") from None
        finally:
            if not paused:
                self.lock.release()


def _undelivered(outcomes: list[dict]) -> str:
    missed = [o for o in outcomes if not o["delivered"]]
    return "not notified: " + ", ".join(f"{o['event']} ({o['error']})" for o in missed)


# ---- module-level operations (the CLI and runbooks call these) --------------------------------

def _options(config: Config, version: str, strategy: str | None, steps: list[int] | None,
             step_pause: float | None, pause_at: int | None, env: dict | None,
             on_inconclusive: str | None = None) -> DeployOptions:
    strategy = strategy or config.deploy.strategy
    if strategy not in ("blue-green", "canary"):
        raise UsageError(f"--strategy: expected blue-green or canary, got {strategy!r}")
    if steps is not None and not steps:
        raise UsageError("--steps: no weights given (expected comma-separated weights like 10,25,50,100)")
    if strategy != "canary" and (steps is not None or step_pause is not None):
        raise UsageError(f"--steps and --step-pause only apply to --strategy canary (strategy is {strategy})")
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
                         pause_at=pause_at, env=dict(env or {}),
                         on_inconclusive=on_inconclusive or config.deploy.analysis.on_inconclusive)


def plan(config: Config, version: str, strategy: str | None = None, steps: list[int] | None = None,
         step_pause: float | None = None, pause_at: int | None = None, env: dict | None = None) -> DeployResult:
    """The ordered steps with effective timeouts and gates; changes nothing."""
    opts = _options(config, version, strategy, steps, step_pause, pause_at, env)
    config.resolve_references(*NEEDED_SECRETS)   # the plan fails exactly where the deploy would
    golden.load(config)
    platform = get_platform(config)
    d = config.deploy
    states, unknown = platform.plan_colors()   # unknown: why the live color cannot be read (still plan)
    live = [c for c in states if c.weight > 0]
    live_color = max(live, key=lambda c: c.weight) if live else None
    new = other_color(live_color.color) if live_color else ("the idle color" if unknown else "blue")
    from_text = (f"{live_color.color} {live_color.version}" if live_color
                 else f"unknown ({unknown})" if unknown else "none (first deploy)")
    a = d.analysis
    gates = get_provider(config).describe()
    lines = [f"take the deploy lock (lease {format_duration(d.lock_ttl)}, heartbeat)",
             f"preflight: live color {from_text} healthy; "
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
                        from_color=live_color.color if live_color else ("unknown" if unknown else None),
                        to_color=new, plan=lines)


def deploy(config: Config, version: str, strategy: str | None = None, steps: list[int] | None = None,
           step_pause: float | None = None, pause_at: int | None = None, env: dict | None = None,
           progress: Progress = ignore, on_inconclusive: str | None = None) -> DeployResult:
    opts = _options(config, version, strategy, steps, step_pause, pause_at, env, on_inconclusive)
    config.resolve_references(*NEEDED_SECRETS)   # before anything is stopped or written
    golden.load(config)                          # a damaged smoke.golden file: exit 2 before anything starts
    platform = get_platform(config)
    refuse_if_unfinished(platform)
    platform.check_release(version)   # a missing image: the command that builds it, before the lock
    return Deployment(config, opts, progress, platform).run()


def refuse_if_unfinished(platform) -> None:
    """A new deploy (any strategy) waits for a paused or interrupted one: LockHeld naming it and the next step.
    A live owner's lock is left to the lock itself (it refuses with its holder)."""
    interrupted = Journal(platform.journal_dir()).current()
    if interrupted:
        lock = platform.lock_backend().read() or {}
        if not lock or not owner_alive(lock) or lock.get("paused"):
            state = "is paused" if lock.get("paused") else f"was interrupted at phase {interrupted.get('phase')}"
            raise LockHeld(f"{_kind(interrupted)} {interrupted['id']} of {interrupted['version']} {state}",
                           hint=next_step(interrupted))


def _journaled(config: Config, progress: Progress, command: str) -> Deployment:
    platform = get_platform(config)
    record = Journal(platform.journal_dir()).current()
    if not record:
        raise UsageError("no deploy is in progress, paused or interrupted (ragops history shows past ones)")
    o = record.get("options", {})
    opts = DeployOptions(version=record["version"], strategy=record["strategy"], steps=o.get("steps") or [100],
                         step_pause=o.get("step_pause") or 0, pause_at=o.get("pause_at"), env=o.get("env") or {},
                         on_inconclusive=o.get("on_inconclusive") or config.deploy.analysis.on_inconclusive)
    return Deployment(config, opts, progress, platform, record=record, command=command)


def resumable(config: Config) -> dict | None:
    """The journal record `deploy --resume` would continue (None: nothing to resume); reads only."""
    return Journal(get_platform(config).journal_dir()).current() or None


def resume(config: Config, progress: Progress = ignore) -> DeployResult:
    """Finish an interrupted deploy or rollback from its journal (the lock of a dead owner is taken
    over), after reconciling the journal with the router's live weights and the colors."""
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
        deployment.reconcile()
        shadow.abort_hook(deployment)      # a shadow deploy's mirror goes before its color stops
        old, new = record.get("from_color"), record.get("to_color")
        if old:
            deployment.switch({old: 100, new: 0} if new else {old: 100}, f"traffic back to {old}")
        if new and new != old:
            # only what this deploy started is stopped: a warm color it never touched stays warm
            if deployment.ours(new) or (not old and deployment.platform.color_state(new, probe=False).running):
                deployment._discard(new)
            else:
                deployment.step(f"keep {new}", None, "not started by this deploy: left as it was")
        result = deployment.finish("aborted", f"aborted by {whoami()}")
    finally:
        deployment.lock.release()
    result.notifications = deployment.deliver_notifications()
    return result


def _from_record(r: dict) -> DeployResult:
    return DeployResult(id=r["id"], version=r["version"], strategy=r["strategy"], result=r.get("result", "?"),
                        from_version=r.get("from_version"), from_color=r.get("from_color"),
                        to_color=r.get("to_color"), reason=r.get("reason"), seconds=r.get("seconds", 0),
                        steps=r.get("steps", []))


def rollback(config: Config, to_version: str | None = None, progress: Progress = ignore) -> DeployResult:
    """Back to the previous version: a router flip when its color is still warm, else a blue-green
    deploy of that version. Decided under the operations lock: concurrent rollbacks wait for each
    other, and one that finds its move already made changes nothing ("already rolled back")."""
    config.resolve_references(*NEEDED_SECRETS)
    platform = get_platform(config)
    journal = Journal(platform.journal_dir())
    # the journal is read under the lock: a concurrent rollback's journal is waited out, not refused
    lock = DeployLock(platform.lock_backend(), config.deploy.lock_ttl, "ragops rollback", brief=True)
    acquire_lock(lock, journal, on_wait=lambda text: say(progress, text))
    try:
        return _rollback_locked(config, platform, journal, lock, to_version, progress)
    except BaseException:
        lock.release()    # once the rollback runs, run() releases it
        raise


def _rollback_locked(config: Config, platform, journal: Journal, lock: DeployLock, to_version: str | None,
                     progress: Progress) -> DeployResult:
    unfinished = journal.current()
    if unfinished:
        raise UsageError(f"{_kind(unfinished)} {unfinished['id']} is in progress or interrupted",
                         hint=next_step(unfinished))
    # what each color runs and the router's live weights; no color is probed here (the rollback
    # probes only the warm color it switches to: every probe is HTTP calls on the path to the flip)
    # router_weights: the live router's, else its config file's (a router that is down on one host
    # of several must not hide what serves traffic: the flip itself then reports that host)
    weights = platform.router_weights()
    states = {c.color: c for c in with_weights([platform.color_state(c, probe=False) for c in COLORS], weights)}
    live = max(states.values(), key=lambda c: c.weight)
    if live.weight == 0:
        raise UsageError("no color serves traffic; nothing to roll back from")
    records = [r for r in journal.history() if r.get("result") == "succeeded" and r.get("version")]
    made_live = [r for r in records if r["version"] == live.version]
    if to_version is None or to_version == live.version:
        done = made_live[-1] if made_live else None
        if to_version == live.version or (done and done.get("strategy") == "rollback"):
            lock.release()
            return _already_rolled_back(live, done, progress)
    if to_version is None:
        done_deploys = [r for r in made_live if r.get("from_version")]
        if not done_deploys:
            raise UsageError(f"no previous version is recorded for {live.version}; use --to VERSION")
        to_version = done_deploys[-1]["from_version"]
    warm = states[other_color(live.color)]
    _check_rollback_target(to_version, journal.history(), warm)
    deployment = Deployment(config, DeployOptions(version=to_version, strategy="rollback", steps=[100], step_pause=0),
                            progress, platform, command="ragops rollback")
    lock.name_deploy(deployment.record["id"])
    deployment.lock, deployment.lock_taken = lock, True
    # journaled (by run) before the router or a color changes: the version it moves away from
    deployment.record.update(from_color=live.color, from_version=live.version, to_color=warm.color)
    return deployment.run()


def _already_rolled_back(live, done: dict | None, progress: Progress) -> DeployResult:
    """The move this rollback wants is made (by a concurrent rollback, or an earlier one): nothing to do."""
    how = (f" (rollback {done['id']} moved away from {done.get('from_version')} at {done.get('ended') or done.get('started')})"
           if done and done.get("strategy") == "rollback" else "")
    reason = f"already rolled back to {live.version}{how}; nothing changed"
    say(progress, reason)
    return DeployResult(id=done["id"] if done else "-", version=live.version, strategy="rollback", result="unchanged",
                        from_version=done.get("from_version") if done else None, to_color=live.color, reason=reason)


def _check_rollback_target(version: str, records: list[dict], warm) -> None:
    """A rollback goes back to something that ran here before; anything else is a deploy."""
    def served(r: dict, key: str) -> bool:   # a shadow deploy's version only answered mirrored copies
        return key == "from_version" or r.get("strategy") != "shadow" or bool((r.get("shadow") or {}).get("then"))

    known = {str(r[key]) for r in records if r.get("result") == "succeeded"
             for key in ("version", "from_version") if r.get(key) and served(r, key)}
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
