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


class TokenFileLock:
    """replace/delete for a lock kept as one JSON document: both compare the owner's token.
    Subclasses provide read(), create(), _write(record) and _remove()."""

    def replace(self, expected_token: str, record: dict) -> bool:
        current = self.read()
        if not current or current.get("token") != expected_token:
            return False
        self._write(record)
        return True

    def delete(self, expected_token: str | None = None) -> bool:
        current = self.read()
        if current is None:
            return False
        if expected_token is not None and current.get("token") != expected_token:
            return False
        self._remove()
        return True


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


def with_weights(states: list[ColorState], weights: dict[str, int]) -> list[ColorState]:
    """Attach the router's weights (colors it does not list get 0) to each color's state."""
    for state in states:
        state.weight = weights.get(state.color, 0)
    return states


@dataclass
class Probe:
    healthy: bool
    ready: bool
    version: str | None = None
    detail: str | None = None      # why not ready, or why it did not answer
    answered: bool = True


def probe_color(url: str, service, client=None) -> Probe:
    """Health, readiness and reported version of one color, straight at its own address."""
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=1.5)
    try:
        healthy = client.get(url + service.health_path).status_code == 200
        answer = client.get(url + service.readiness_path)
        probe = Probe(healthy=healthy, ready=answer.status_code == 200)
        if not probe.ready:
            probe.detail = f"{service.readiness_path} -> {answer.status_code} {answer.text[:160]}"
        version = client.get(url + "/version")
        if version.status_code == 200:
            probe.version = version.json().get("version")
        return probe
    except httpx.HTTPError as exc:
        return Probe(healthy=False, ready=False, detail=f"not answering: {type(exc).__name__}", answered=False)
    finally:
        if own:
            client.close()


def service_env(config, color: str, version: str, extra: dict[str, str] | None) -> dict[str, str]:
    """The bundled service's environment for one color (secrets resolved here, never logged)."""
    from ragops.db.connect import api_keys, app_dsn

    service = config.service
    env = {
        "RAG_DATABASE_URL": app_dsn(config),
        "RAG_API_KEYS": ",".join(api_keys(config)),
        "RAG_VERSION": version,
        "RAG_COLOR": color,
        "RAG_RATE_LIMIT_PER_MINUTE": str(service.rate_limit_per_minute),
        "RAG_CORS_ORIGINS": ",".join(service.cors_origins),
        "RAG_GRACEFUL_TIMEOUT": str(int(config.deploy.drain_timeout)),
        "PYTHONUNBUFFERED": "1",
    }
    for name, ref in service.secrets.items():
        env[name] = config.reveal(ref, f"service.secrets.{name}")
    env.update(service.env)
    env.update(extra or {})
    return env
