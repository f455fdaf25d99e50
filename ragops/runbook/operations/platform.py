"""The service on its platform: maintenance mode, status, stop, start and restart of colors."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from ragops import platforms
from ragops.errors import OperationFailed
from ragops.readiness import wait_ready
from ragops.runbook.operations.common import duration, flag
from ragops.runbook.operations.registry import Context, operation


@operation("maintenance")
def maintenance(ctx: Context, *, enabled: Any = True) -> dict:
    """Maintenance mode on or off (the router answers 503).

    enabled: true (default) or false; not `on`, which YAML reads as a boolean key.
    """
    on = flag(enabled, True)
    platforms.get_platform(ctx.require_config()).set_maintenance(on)
    return {"maintenance": on}


@operation("service.status")
def service_status(ctx: Context) -> dict:
    """The colors as the platform sees them."""
    colors = [dataclasses.asdict(c) for c in platforms.get_platform(ctx.require_config()).colors()]
    live = [c for c in colors if c["running"] and c["weight"] > 0]
    return {"colors": colors, "live": [c["color"] for c in live],
            "live_version": live[0]["version"] if live else None}


@operation("service.stop")
def service_stop(ctx: Context, *, drain_timeout: Any = None) -> dict:
    """Stop the running colors gracefully; outputs what was stopped for service.start."""
    config = ctx.require_config()
    platform = platforms.get_platform(config)
    drain = duration(drain_timeout, "drain_timeout", config.deploy.drain_timeout)
    stopped = []
    for state in platform.colors():
        if not state.running:
            continue
        platform.stop_color(state.color, drain_timeout=drain, progress=ctx.progress)
        stopped.append({"color": state.color, "version": state.version, "deploy_id": state.deploy_id,
                        "env": state.env or {}, "weight": state.weight})
    return {"stopped": stopped, "count": len(stopped)}


@operation("service.start")
def service_start(ctx: Context, *, colors: list) -> dict:
    """Start colors again (same version, deploy id and settings) and wait until they are ready.

    colors: the `stopped` output of a service.stop step.
    """
    config = ctx.require_config()
    platform = platforms.get_platform(config)
    if not isinstance(colors, list) or not colors:
        raise OperationFailed("service.start: no colors to start (expected the `stopped` output of service.stop)")
    started = []
    for entry in colors:
        color = entry["color"]
        platform.start_color(color, entry.get("version") or config.service.version,
                             deploy_id=entry.get("deploy_id") or f"runbook-{ctx.engine.run_id}",
                             env=entry.get("env") or None, progress=ctx.progress)
        timeout = ctx.remaining(config.service.startup_timeout) or config.service.startup_timeout
        seconds = wait_ready(platform, color, timeout, ctx.progress)
        started.append({"color": color, "version": entry.get("version"), "ready_seconds": seconds})
    platform.refresh_backends()
    return {"started": started}


@operation("service.restart")
def service_restart(ctx: Context, *, all: Any = False) -> dict:   # `all` is the YAML key
    """Restart the live colors in place and wait until they are ready. all: also idle colors."""
    config = ctx.require_config()
    platform = platforms.get_platform(config)
    restarted = []
    for state in platform.colors():
        if not state.running or (state.weight <= 0 and not flag(all)):
            continue
        ctx.progress(f"restarting {state.color} ({state.version})")
        platform.start_color(state.color, state.version or config.service.version,
                             deploy_id=state.deploy_id or f"restart-{ctx.engine.run_id}", env=state.env or None)
        restarted.append(state.color)
    if not restarted:
        raise OperationFailed("no running color to restart")
    platform.refresh_backends()
    deadline = time.monotonic() + (ctx.remaining(config.service.startup_timeout) or config.service.startup_timeout)
    for color in restarted:   # the one readiness poller, with the engine's interruptible sleep
        wait_ready(platform, color, max(0.5, deadline - time.monotonic()), ctx.progress, interval=0.5,
                   sleep=ctx.sleep)
    return {"restarted": restarted}
