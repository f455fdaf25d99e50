"""The Platform protocol: what deploy strategies, smoke tests and status need from a platform.

local, docker and kubernetes implement it; the strategies in ragops.deploy only talk to this.
The platform is the source of truth (process table + router config, container labels, k8s
annotations); files under the state directory are a journal and a cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

COLORS = ("blue", "green")

Progress = Callable[[str], None]


def other_color(color: str) -> str:
    return "green" if color == "blue" else "blue"


@dataclass
class ColorState:
    color: str
    running: bool
    version: str | None = None
    url: str | None = None            # the color's own address, bypassing the router (preview)
    pid: int | None = None
    port: int | None = None
    healthy: bool | None = None       # /healthz answered 200
    ready: bool | None = None         # /readyz answered 200
    weight: int = 0                   # share of router traffic, 0..100
    deploy_id: str | None = None
    started_at: str | None = None
    env: dict[str, str] = field(default_factory=dict)   # non-secret overrides it was started with
    detail: str | None = None


class LockBackend(Protocol):
    """Where the deploy lock lives (a file locally, a label/volume file on a docker host...)."""

    def read(self) -> dict | None: ...
    def create(self, record: dict) -> bool: ...              # False when one already exists
    def replace(self, expected_token: str, record: dict) -> bool: ...
    def delete(self, expected_token: str | None = None) -> bool: ...


class Platform(Protocol):
    name: str

    def colors(self) -> list[ColorState]:
        """Both colors as they really are (running, version, health, router weight)."""

    def start_color(self, color: str, version: str, *, deploy_id: str, env: dict[str, str] | None = None,
                    progress: Progress | None = None) -> ColorState:
        """Start (or restart) `color` running `version`; returns once the process/container exists."""

    def stop_color(self, color: str, *, drain_timeout: float, progress: Progress | None = None) -> None:
        """Graceful stop: SIGTERM (in-flight requests finish), kill after drain_timeout."""

    def color_url(self, color: str) -> str:
        """The color's direct URL, for readiness, smoke tests and /metrics."""

    def router_url(self) -> str:
        """The public address behind the router."""

    def router_weights(self) -> dict[str, int]:
        """The weights the router is serving right now (read back from the router itself)."""

    def set_weights(self, weights: dict[str, int], *, confirm_timeout: float = 10.0) -> float:
        """Write the router config atomically and wait until the router serves it; returns the
        seconds from the write until the router confirmed it."""

    def lock_backend(self) -> LockBackend: ...

    def journal_dir(self):
        """A directory (pathlib.Path) for the deploy journal and history cache."""
