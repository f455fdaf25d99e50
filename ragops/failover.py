"""Region failover: fence the old primary, promote the target region's replica, DNS to the
target region, start the service there, smoke test, and report what was achieved (RTO, RPO).

RPO is measured before anything is changed: the target replica's lag behind the old primary at
the moment of failure. When the old primary is already dead and its data directory is local, the
end of the WAL it wrote is read with pg_waldump, so the bytes (and the commit-time window) that
never reached the replica are known instead of guessed.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, overload

from ragops.errors import OperationFailed, RagopsError, UsageError
from ragops.events import MaybeSay as Progress
from ragops.secrets import redact

if TYPE_CHECKING:
    from ragops.platforms.base import Platform



def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Step:
    name: str
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    ok: bool = True
    detail: str = ""


@dataclass
class FailoverReport:
    environment: str
    from_region: str | None
    to_region: str | None
    old_primary: str
    new_primary: str
    started_at: str
    failure_time: str | None
    steps: list[Step] = field(default_factory=list)
    writes_accepted_at: str | None = None
    dns_insync_at: str | None = None
    service_ready_at: str | None = None
    rto_seconds: float | None = None           # failure (or start) -> writes accepted and DNS in sync
    rto_service_seconds: float | None = None   # failure (or start) -> smoke passed in the target region
    rpo_bytes: int | None = None
    rpo_seconds: float | None = None
    rpo_source: str = ""
    slo: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    smoke: dict | None = None
    passed: bool = False


@overload
def _parse_time(value: str | datetime) -> datetime: ...
@overload
def _parse_time(value: str | datetime | None) -> datetime | None: ...


def _parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--failure-time: expected an ISO 8601 time like 2024-05-01T03:12:00Z, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _region_of(config, node_name: str) -> str | None:
    for name, region in config.env.regions.items():
        if region.database_node == node_name:
            return name
    return None


def choose_target(config, to: str | None, statuses) -> tuple[str | None, str]:
    """(region, database node) to fail over to: `to`, else the region whose node is a replica."""
    regions = config.env.regions
    if to:
        if to not in regions:
            raise UsageError(f"unknown region {to!r} (regions: {', '.join(regions) or 'none configured'})")
        return to, regions[to].database_node
    replicas = [s.name for s in statuses if s.role == "replica"]
    for name, region in regions.items():
        if region.database_node in replicas:
            return name, region.database_node
    if replicas:
        return None, replicas[0]
    raise OperationFailed("no reachable replica to fail over to", hint="ragops db status shows every node")


def measure_rpo(config, target, old_primary) -> tuple[int | None, float | None, str]:
    """Lag of `target` behind `old_primary` (NodeStatus objects) at this moment."""
    from ragops.db.replication import lsn_or_none, lsn_to_int
    from ragops.db.standby import wal_end

    received = lsn_or_none(target.received_lsn) or lsn_or_none(target.replayed_lsn)
    if old_primary is not None and old_primary.reachable and old_primary.current_lsn:
        lag = max(0, lsn_to_int(old_primary.current_lsn) - (received or 0))
        return lag, (target.lag_seconds if lag else 0.0), "live primary: pg_current_wal_lsn - replica received"
    if old_primary is None:
        return None, None, "no old primary known"
    try:
        end = wal_end(config, old_primary.name, start_lsn=target.received_lsn or target.replayed_lsn)
    except Exception as exc:  # noqa: BLE001 - RPO stays unknown, said so
        return None, None, f"dead primary: cannot read its WAL ({redact(str(exc))})"
    if not end.get("end_lsn") and not end.get("checkpoint_lsn"):
        return None, None, "dead primary, no local data directory: unknown (not measurable from here)"
    if not end.get("end_lsn"):
        return None, None, (f"dead primary: its WAL end is unknown (last checkpoint {end.get('checkpoint_lsn')}, "
                            f"replica received {target.received_lsn})")
    last = lsn_to_int(end["end_lsn"])
    lag = max(0, last - (received or 0))
    seconds = 0.0 if lag == 0 else None
    if lag and end.get("last_commit"):
        try:
            from ragops.db.connect import find_node
            from ragops.db.replication import connect_node

            with connect_node(config, find_node(config, target.name)) as conn:
                seconds = conn.execute("SELECT GREATEST(0, EXTRACT(EPOCH FROM (%s::timestamptz - "
                                       "pg_last_xact_replay_timestamp())))",
                                       (end["last_commit"] + " UTC",)).fetchone()[0]
                seconds = float(seconds) if seconds is not None else None
        except Exception:  # noqa: BLE001
            seconds = None
    return lag, seconds, f"dead primary: {end.get('source')} end of WAL {end.get('end_lsn') or end.get('checkpoint_lsn')} " \
                         f"- replica received {target.received_lsn}"


def region_failover(config, to: str | None = None, failure_time=None, *, confirm_down: bool = False,
                    skip_service: bool = False, progress: Progress = None) -> FailoverReport:
    """Fence the old primary, promote the target region's replica, move DNS, start and smoke-test the
    service there; journal the report after every step and measure RTO/RPO against the SLO."""
    from ragops.notify.outbox import Outbox

    run = _RegionFailover(config, to, _parse_time(failure_time), confirm_down, progress)
    what = f"failover of {config.env_name} to {run.region} ({run.node})"
    # a slow webhook never delays the failover: events go out in the background, and the command
    # waits at most notify.timeout for them at its very end (ragops/notify/outbox.py)
    outbox = Outbox(config, progress)
    outbox.put("failover", "start", what)
    try:
        run.fence()
        run.promote()
        run.dns()
        if skip_service:
            run.report.notes.append("service steps skipped on request")
        else:
            run.service()
        report = run.finish()
    except (RagopsError, OSError) as exc:
        why = exc.message if isinstance(exc, RagopsError) else type(exc).__name__
        outbox.put("failover", "failed", f"{what}: {redact(why)}")
        outbox.finish(config.env.notify.timeout)
        raise
    outbox.put("failover", "succeeded", f"{what}: RTO {report.rto_seconds}s",
               fields={"rto_seconds": report.rto_seconds, "rpo_seconds": report.rpo_seconds})
    outbox.finish(config.env.notify.timeout)
    return report


class _RegionFailover:
    """One failover in progress: its report, what is done so far, and one method per phase."""

    def __init__(self, config, to: str | None, failure: datetime | None, confirm_down: bool, progress: Progress):
        from ragops.db import replication as repl

        self.config, self.failure, self.confirm_down, self.progress = config, failure, confirm_down, progress
        self.started = _now()
        statuses = repl.topology(config)
        self.region, self.node = choose_target(config, to, statuses)
        target = next(s for s in statuses if s.name == self.node)
        from ragops.db.bringup import database_manager

        self.ha = database_manager(config)   # Patroni in charge: it fences and promotes, ragops asks it
        if target.role == "primary" and not target.fenced and self.ha is None:
            raise UsageError(f"{self.node} (region {self.region}) is already the primary; nothing to fail over",
                             hint="ragops db status")
        if not target.reachable:
            raise OperationFailed(f"{self.node} (region {self.region}) is unreachable; cannot fail over to it")
        old = next((s for s in statuses if s.role == "primary" and s.name != self.node), None)
        if old is None:
            journaled = repl.read_topology(config).get("primary") or config.database.primary.name
            old = next((s for s in statuses if s.name == journaled and s.name != self.node), None)
        self.old = old
        self.old_name = old.name if old else "?"
        self.report = FailoverReport(
            environment=config.env_name, from_region=_region_of(config, self.old_name), to_region=self.region,
            old_primary=self.old_name, new_primary=self.node, started_at=self.started.isoformat(),
            failure_time=failure.isoformat() if failure else None,
            slo={"rto_seconds": config.slo.rto_seconds, "rpo_seconds": config.slo.rpo_seconds})
        self.report.rpo_bytes, self.report.rpo_seconds, self.report.rpo_source = measure_rpo(config, target, old)
        self.say(f"RPO at failure: {self.report.rpo_bytes} bytes / {self.report.rpo_seconds} s "
                 f"({self.report.rpo_source})")
        _journal(config, self.report)
        self.state = {"fenced": False, "promoted": False, "dns": False, "service": False}
        self.writes_at = self.dns_at = self.started
        self.platform: Platform | None = None

    def say(self, message: str) -> None:
        if self.progress:
            self.progress(redact(message))

    def step(self, name: str, func: Callable[[], str], what_now: Callable[[], str]) -> str:
        """Run one phase as a journaled step; a failure says what is done and what to run next."""
        step = Step(name=name, started_at=_now().isoformat(timespec="milliseconds"))
        self.report.steps.append(step)
        begin = time.monotonic()
        self.say(f"{name} ...")
        try:
            detail = func()
        except Exception as exc:  # noqa: BLE001 - every failure gets the state and the next move
            step.ok = False
            step.finished_at = _now().isoformat(timespec="milliseconds")
            step.seconds = round(time.monotonic() - begin, 3)
            step.detail = redact(getattr(exc, "message", None) or str(exc))
            _journal(self.config, self.report)
            done = ", ".join(k for k, v in self.state.items() if v) or "nothing"
            raise OperationFailed(f"failover stopped at '{name}': {step.detail} (done so far: {done})",
                                  hint=what_now()) from None
        step.finished_at = _now().isoformat(timespec="milliseconds")
        step.seconds = round(time.monotonic() - begin, 3)
        step.detail = detail or ""
        self.say(f"{name}: {step.detail} ({step.seconds:.2f}s)")
        return detail

    def fence(self) -> None:
        from ragops.db import replication as repl

        if self.ha is not None:
            self.step("fence old primary", lambda: "Patroni fences: a leader that cannot renew its key in etcd "
                                                   "demotes itself, and a dead node holds nothing", lambda: "")
            return

        def do_fence() -> str:
            old = self.old
            if old is None:
                return "no old primary known"
            if old.fenced:
                return f"{old.name} already fenced"
            result = repl.fence(self.config, old.name, confirm_down=self.confirm_down, progress=self.progress,
                                status=old)
            self.state["fenced"] = True
            return f"{result.node}: {result.method} ({result.detail})"
        self.step("fence old primary", do_fence,
                  lambda: f"nothing changed yet; if {self.old_name} is really down, repeat with --confirm-down")

    def promote(self) -> None:
        from ragops.db import replication as repl

        if self.ha is not None:
            self.step("promote replica", self._patroni_promote,
                      lambda: f"check `ragops db status`; Patroni's failover: `ragops db promote {self.node} --force`")
            self.writes_at = self.dns_at = _now()
            return

        def do_promote() -> str:
            result = repl.promote(self.config, self.node, fence_old=False, confirm_down=True, progress=self.progress)
            self.state["promoted"] = True
            self.report.writes_accepted_at = result.test_write["at"]
            return f"{self.node} primary on timeline {result.timeline}, test write ok"
        self.step("promote replica", do_promote,
                  lambda: f"{self.old_name} is fenced and no node accepts writes: check `ragops db status`, then "
                          f"`ragops db promote {self.node} --confirm-down`")
        self.writes_at = self.dns_at = _now()

    def _patroni_promote(self) -> str:
        from ragops.ha import patroni
        from ragops.ha.verbs import failover

        if patroni.leader(self.config) == self.node:
            detail = f"{self.node} already leads (Patroni failed over by itself)"
        else:
            failover(self.config, self.node, force=True, progress=self.say)
            detail = f"{self.node} leads (Patroni failover)"
        self.state["promoted"] = True
        self.report.writes_accepted_at = _now().isoformat(timespec="milliseconds")
        return detail

    def dns(self) -> None:
        from ragops.dns.base import DnsChange
        from ragops.dns.base import configured as dns_configured
        from ragops.dns.registry import failover as dns_failover

        if not dns_configured(self.config):
            self.report.notes.append(
                "DNS not configured for this environment (dns.record/zone/primary/secondary): skipped")
            return
        to = self.region or "secondary"

        def do_dns() -> str:
            change = dns_failover(self.config, to, progress=self.progress)
            assert isinstance(change, DnsChange)   # not a dry run: the change, not the plan
            self.state["dns"] = True
            self.report.dns_insync_at = change.insync_at or _now().isoformat()
            return f"{change.plan.record} -> {change.plan.new}: {change.status}" + \
                (f" (change {change.change_id}, {change.polls} polls)" if change.change_id else "")
        self.step("DNS to the target region", do_dns,
                  lambda: f"the database is promoted ({self.node} accepts writes) but DNS still points at the old "
                          f"region: run `ragops dns failover --to {to} --yes`")
        self.dns_at = _now()

    def service(self) -> None:
        def do_service() -> str:
            from ragops.platforms import get_platform

            self.platform = get_platform(self.config, region=self.region)
            return _ensure_service(self.config, self.platform, self.progress)
        self.step("start the service in the target region", do_service,
                  lambda: f"the database is promoted ({self.node}){' and DNS moved' if self.state['dns'] else ''}; "
                          f"start the service in region {self.region}: `ragops deploy` / `ragops up` there, "
                          f"then `ragops smoke`")
        self.state["service"] = True

        def do_smoke() -> str:
            from ragops.smoke import run_smoke, wait_serving

            # the router's health check may have marked the color down while the database moved
            if self.platform is not None:
                wait_serving(self.platform.router_url(), self.config.service.health_path)
            smoke = run_smoke(self.config, platform=self.platform)
            self.report.smoke = {"url": smoke.url, "passed": smoke.passed,
                                 "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail}
                                            for c in smoke.checks]}
            if not smoke.passed:
                failed = "; ".join(f"{c.name}: {c.detail}" for c in smoke.failed)
                raise OperationFailed(f"smoke test failed: {failed}")
            self.report.service_ready_at = _now().isoformat()
            return f"{len(smoke.checks)} checks passed through {smoke.url}"
        self.step("smoke test", do_smoke,
                  lambda: f"database promoted and service started in {self.region or 'this environment'}, but it "
                          f"does not pass the smoke test: see `ragops logs`, fix, `ragops smoke`")

    def finish(self) -> FailoverReport:
        report, config = self.report, self.config
        origin = self.failure or self.started
        report.rto_seconds = round((max(self.writes_at, self.dns_at) - origin).total_seconds(), 3)
        if report.service_ready_at:
            report.rto_service_seconds = round((_parse_time(report.service_ready_at) - origin).total_seconds(), 3)
        report.slo.update({
            "rto_met": report.rto_seconds <= config.slo.rto_seconds,
            "rpo_met": None if report.rpo_seconds is None else report.rpo_seconds <= config.slo.rpo_seconds})
        report.passed = True
        if self.old is not None:
            report.notes.append(f"next: `ragops db rejoin {self.old.name}` once its host is back (pg_rewind)")
        _journal(config, report)
        return report


def _ensure_service(config, platform, progress: Progress) -> str:
    """Make sure a ready color serves 100 % through the region's router."""
    from ragops.readiness import wait_ready

    say = progress or (lambda _m: None)
    platform.start_router(say)
    colors = platform.colors()
    live = [c for c in colors if c.running and c.ready and c.weight > 0]
    if live:
        return f"{live[0].color} already serving ({live[0].version}) at {platform.router_url()}"
    ready = [c for c in colors if c.running and c.ready]
    if ready:
        color = ready[0].color
        version = ready[0].version
    else:
        version = _serving_version(config)
        color = "blue"
        platform.start_color(color, version, deploy_id=f"failover-{uuid.uuid4().hex[:8]}", progress=say)
        wait_ready(platform, color, config.service.startup_timeout, say)
    platform.set_weights({color: 100})
    return f"{color} ({version}) serving 100% at {platform.router_url()}"


def _serving_version(config) -> str:
    """The version the old region was serving (so a failover does not deploy something new)."""
    try:
        from ragops.platforms import get_platform

        for state in get_platform(config).colors():
            if state.running and state.weight > 0 and state.version:
                return state.version
    except Exception:  # noqa: BLE001 - the old region may be gone
        pass
    return config.service.version


def _journal(config, report: FailoverReport) -> None:
    """Append the report as it stands (after every step): the last record of a failover
    (same started_at) is where it got to, even when ragops was killed half-way."""
    from ragops import journal

    journal.append(config.state_dir / "failovers.jsonl", report)
