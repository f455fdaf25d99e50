"""Waiting until a color answers its readiness check: the one poller deploy, `up`, failover and
the runbooks use."""
from __future__ import annotations

import time
from collections.abc import Callable

from ragops.errors import OperationFailed
from ragops.events import quiet as _noop
from ragops.platforms.base import Platform, Progress


def wait_ready(platform: Platform, color: str, timeout: float, progress: Progress = _noop, *,
               url: str | None = None, where: str | None = None, interval: float = 0.2,
               sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll the color's readiness until it answers 200; returns the seconds it took.

    Fails early (OperationFailed with the reason from its log) when the color's process exits,
    and with the last answer when it is not ready within `timeout`.
    `url`/`where`: one host's direct URL and its name, for platforms with several hosts.
    `sleep`: the runbook engine passes its own, which an interrupt ends."""
    import httpx

    url = (url or platform.color_url(color)).rstrip("/") + platform.config.service.readiness_path
    name = f"{color} on host {where}" if where else color
    start = time.monotonic()
    last = "no answer"
    with httpx.Client(timeout=2) as client:
        while time.monotonic() - start < timeout:
            try:
                resp = client.get(url)
                if resp.status_code == 200:
                    progress(f"{name} is ready ({time.monotonic() - start:.1f}s)")
                    return time.monotonic() - start
                last = f"{resp.status_code} {resp.text[:160]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            state = platform.color_state(color, probe=False)
            if not state.running:
                raise OperationFailed(f"{name} exited before it was ready: "
                                      f"{_log_reason(platform, color) or state.detail or last}",
                                      hint=f"ragops logs {color}")
            sleep(interval)
    raise OperationFailed(f"{name} was not ready within {timeout:.0f}s ({platform.config.service.readiness_path}: {last})")


def _log_reason(platform: Platform, color: str) -> str:
    """The line of the color's log tail that says why it died (uvicorn ends with a shutdown line)."""
    path = platform.log_file(color)
    if path is None:
        return ""
    from ragops.process import tail

    lines = [line.strip() for line in tail(path, 20).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1]
