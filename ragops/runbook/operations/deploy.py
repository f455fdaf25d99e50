"""Releases: deploy, rollback, rollback readiness, smoke tests and load tests."""
from __future__ import annotations

import dataclasses
from typing import Any

from ragops import loadgen, platforms, smoke
from ragops.db import connect as db_connect
from ragops.deploy import engine as deploy_engine
from ragops.errors import ConfigError, GateFailed, OperationFailed, RagopsError
from ragops.runbook.operations.common import duration, flag, number, optional_int, router_url, to_outputs, with_outputs
from ragops.runbook.operations.registry import Context, operation


def _outcome(what: str, outputs: dict) -> dict:
    """DeployResult.result: succeeded | rolled_back | aborted | paused | failed."""
    result = outputs.get("result")
    if result in ("succeeded", "paused", "planned", None):
        return outputs
    error_class = GateFailed if result == "rolled_back" else OperationFailed
    raise with_outputs(error_class(f"{what} {outputs.get('version', '')}: {result}"
                                   + (f" ({outputs['reason']})" if outputs.get("reason") else "")), outputs)


@operation("deploy")
def deploy(ctx: Context, *, version: str, strategy: str | None = None, steps: str | list | None = None,
           step_pause: Any = None, pause_at: Any = None, env: dict | None = None) -> dict:
    """Deploy a version with the configured (or given) strategy.

    strategy: blue-green or canary; steps: canary weights ("10,50,100" or a list); env: extra service environment.
    """
    if isinstance(steps, str):
        steps = [int(x) for x in steps.split(",") if x.strip()]
    result = deploy_engine.deploy(ctx.require_config(), str(version), strategy=strategy or None, steps=steps,
                                  step_pause=duration(step_pause, "step_pause"), pause_at=optional_int(pause_at),
                                  env=env, progress=ctx.progress)
    return _outcome("deploy", to_outputs(result))


@operation("rollback")
def rollback(ctx: Context, *, to_version: str | None = None) -> dict:
    """Roll back to the previous (or given) version."""
    result = deploy_engine.rollback(ctx.require_config(), to_version=to_version or None, progress=ctx.progress)
    return _outcome("rollback", to_outputs(result))


@operation("rollback.check", gate=True)
def rollback_check(ctx: Context, *, require_previous: Any = False) -> dict:
    """Rollback readiness: the live color is healthy with a known version and rollback is possible.

    require_previous: also require a previous version kept warm.
    """
    colors = platforms.get_platform(ctx.require_config()).colors()
    live = [c for c in colors if c.running and c.weight > 0]
    standby = [c for c in colors if c.version and c not in live]
    outputs = {"live": [dataclasses.asdict(c) for c in live], "previous_versions": [c.version for c in standby]}
    if not live:
        raise GateFailed("rollback readiness: no live color is serving traffic")
    unhealthy = [c.color for c in live if c.healthy is False]
    if unhealthy:
        raise GateFailed(f"rollback readiness: live color(s) {', '.join(unhealthy)} unhealthy")
    if flag(require_previous) and not standby:
        raise GateFailed("rollback readiness: no previous version kept (deploy.keep_previous)")
    outputs["live_version"] = live[0].version
    return outputs


@operation("smoke", gate=True)
def smoke_tests(ctx: Context, *, url: str | None = None, color: str | None = None,
                expect_version: str | None = None) -> dict:
    """Run the smoke tests; a gate."""
    report = smoke.run_smoke(ctx.require_config(), url=url or None, color=color or None,
                             expect_version=expect_version or None)
    outputs = to_outputs(report)
    if not getattr(report, "passed", outputs.get("passed")):
        failed = [c for c in outputs.get("checks", [])
                  if isinstance(c, dict) and not c.get("passed", c.get("ok", True))]
        names = ", ".join(str(c.get("name", "?")) for c in failed) or "see checks"
        raise with_outputs(GateFailed(f"smoke tests failed: {names}"), outputs)
    return outputs


@operation("loadtest", gate=True)
def loadtest(ctx: Context, *, rps: Any, url: str | None = None, duration: Any = None, path: str | None = None,
             api_key: str | None = None, max_p95_ms: Any = None, max_error_rate: Any = None,
             min_rps: Any = None) -> dict:
    """A bounded load test with thresholds; a gate.

    url: default the router; api_key: default the service's key; duration: default 10s.
    """
    config = ctx.config
    url = url or router_url(ctx.require_config())
    if api_key is None and config is not None:
        try:
            api_key = db_connect.api_keys(config)[0]
        except RagopsError:
            api_key = None
    rate = number(rps, "rps")
    if rate is None:
        raise ConfigError("rps: expected a number, got ''")
    options: dict[str, Any] = {"path": path} if path else {}        # else run_load's default path
    stats = loadgen.run_load(str(url), rate, _seconds(duration), api_key=api_key, **options)
    outputs = to_outputs(stats)
    problems = []
    p95_limit, error_limit = number(max_p95_ms, "max_p95_ms"), number(max_error_rate, "max_error_rate")
    least_rps = number(min_rps, "min_rps")
    p95, error_rate, achieved = outputs.get("p95_ms"), outputs.get("error_rate"), outputs.get("rps")
    if p95_limit is not None and p95 is not None and p95 > p95_limit:
        problems.append(f"p95 {p95:.0f} ms is above {p95_limit:.0f} ms")
    if error_limit is not None and error_rate is not None and error_rate > error_limit:
        problems.append(f"error rate {error_rate:.2%} is above {error_limit:.2%}")
    if least_rps is not None and achieved is not None and achieved < least_rps:
        problems.append(f"achieved {achieved:.1f} rps, below {least_rps:.1f}")
    if problems:
        raise with_outputs(GateFailed("load test: " + "; ".join(problems)), outputs)
    return outputs


def _seconds(value: Any) -> float:
    return duration(value, "duration", 10.0)
