"""The Platform interface: what deploy strategies, smoke tests, status and failover need from a platform.

local, docker and kubernetes implement it (registered in ragops.platforms); callers only talk to this.
The platform is the source of truth (process table + router config, container labels, k8s
annotations); files under the state directory are a journal and a cache.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ragops.errors import OperationFailed
from ragops.events import Say as Progress
from ragops.events import quiet as _noop

if TYPE_CHECKING:
    import httpx

    from ragops.config import Config, DbNode, ServiceConfig

COLORS = ("blue", "green")





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


class TokenFileLock(abc.ABC):
    """replace/delete for a lock kept as one JSON document: both compare the owner's token.
    Subclasses provide read(), create(), _write(record) and _remove()."""

    @abc.abstractmethod
    def read(self) -> dict | None: ...

    @abc.abstractmethod
    def create(self, record: dict) -> bool: ...

    @abc.abstractmethod
    def _write(self, record: dict) -> None: ...

    @abc.abstractmethod
    def _remove(self) -> None: ...

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


class Platform(abc.ABC):
    """Everything deploy, status, failover and the runbooks ask of a platform.

    Abstract methods are what every platform must do. Methods with a body are optional features:
    the default says what a platform without the feature does (a no-op, or OperationFailed), so
    callers call them instead of probing with hasattr. Capabilities are class attributes that
    callers ask instead of comparing the platform's name.
    """

    name: ClassVar[str]

    # ---- capabilities ---------------------------------------------------------------------
    #: an unset database password / API key / backup key is generated once under the state dir
    generates_local_secrets: ClassVar[bool] = False
    #: ragops manages the PostgreSQL data directories (initdb, pg_ctl, pg_rewind) on this machine
    owns_database_files: ClassVar[bool] = False
    #: deploy's preflight applies pending (expand-only) migrations to the current primary
    runs_migrations_in_preflight: ClassVar[bool] = False
    #: a failover region can run its own router and colors (get_platform(config, region))
    supports_regions: ClassVar[bool] = False
    #: the service runs from manifests `ragops render` produces (their security settings are auditable)
    renders_manifests: ClassVar[bool] = False
    #: colors run <service.path>/ragservice from source (not an image): `up` checks that folder first
    runs_service_from_source: ClassVar[bool] = False

    config: Config
    region: str | None = None      # a failover region other than the default (supports_regions)

    def __init__(self, config: Config, region: str | None = None) -> None:
        """Built from the loaded config; only platforms that support regions take `region`."""
        self.config = config
        self.region = region

    # ---- lifecycle --------------------------------------------------------------------------
    @abc.abstractmethod
    def up(self, progress: Progress = _noop) -> list[str]:
        """Bring the environment up (idempotent); returns the changes it made."""

    @abc.abstractmethod
    def down(self, purge: bool = False, progress: Progress = _noop) -> list[str]:
        """Stop what ragops started (data kept unless purge); returns what it stopped."""

    def check_release(self, version: str) -> None:
        """Refuse (OperationFailed naming what makes it) before a deploy takes its lock when `version`
        cannot start here, e.g. its image is on no host. Platforms whose colors run from source: nothing."""
        del version   # nothing to check: colors run from service.path, which `up` checked

    @abc.abstractmethod
    def plan_up(self) -> list[str]:
        """What `up` would do, one line each, from the config alone: nothing is touched and no
        router, daemon or cluster needs to be reachable (`up --dry-run`)."""

    def plan_colors(self) -> tuple[list[ColorState], str | None]:
        """The colors for a plan (`deploy --plan`): (states, None), or ([], why they are unknown)
        when the platform cannot be asked and the plan should still be printed."""
        return self.colors(), None

    @abc.abstractmethod
    def logs(self) -> dict[str, Path]:
        """Log files by component name (router, blue, green, ...)."""

    def log_file(self, color: str) -> Path | None:
        """The color's own log on this machine, to say why it died; None where there is none."""
        return None

    # ---- colors -----------------------------------------------------------------------------
    @abc.abstractmethod
    def colors(self) -> list[ColorState]:
        """Both colors as they really are (running, version, health, router weight)."""

    @abc.abstractmethod
    def color_state(self, color: str, probe: bool = True) -> ColorState:
        """One color; with probe, its health, readiness and version are asked from it."""

    @abc.abstractmethod
    def start_color(self, color: str, version: str, *, deploy_id: str, env: dict[str, str] | None = None,
                    progress: Progress = _noop) -> ColorState:
        """Start (or restart) `color` running `version`; returns once the process/container exists."""

    @abc.abstractmethod
    def stop_color(self, color: str, *, drain_timeout: float, progress: Progress = _noop) -> None:
        """Graceful stop: SIGTERM (in-flight requests finish), kill after drain_timeout."""

    @abc.abstractmethod
    def color_url(self, color: str) -> str:
        """The color's direct URL, for readiness, smoke tests and /metrics."""

    def color_urls(self, color: str) -> list[tuple[str | None, str]]:
        """(host name, direct URL) for every host running the color; readiness and smoke check each.
        One host (named None) unless the platform spreads a color over several."""
        return [(None, self.color_url(color))]

    # ---- router -----------------------------------------------------------------------------
    @abc.abstractmethod
    def router_url(self) -> str:
        """The public address behind the router."""

    @abc.abstractmethod
    def router_running(self) -> bool: ...

    def start_router(self, progress: Progress = _noop) -> None:
        """Start the router when it is not running. Platforms whose router only `up` creates do
        nothing here (failover calls it before routing to a region)."""
        return None

    def routers(self) -> list:
        """Every router ragops writes for this environment (one per host where the platform spreads
        over hosts): what a change that must reach all of them, like a shadow mirror, goes to."""
        return []

    def was_live(self) -> dict[str, int]:
        """The weights that were live before a restart (what `up`, the supervisor and `db recover` bring
        back); a platform that does not restore colors itself answers {}."""
        return {}

    @abc.abstractmethod
    def router_weights(self) -> dict[str, int]:
        """The weights the router is serving right now (read back from the router itself)."""

    @abc.abstractmethod
    def set_weights(self, weights: dict[str, int], *, confirm_timeout: float = 10.0) -> float:
        """Write the router config atomically and wait until the router serves it; returns the
        seconds from the write until the router confirmed it."""

    def refresh_backends(self) -> None:
        """Make the router list every running color (weights unchanged). A no-op where the
        platform's service discovery does it (kubernetes Services)."""
        return None

    def maintenance(self) -> bool:
        """Whether the router answers 503 to everything (maintenance mode)."""
        return False

    def set_maintenance(self, on: bool) -> None:
        """Maintenance on: the router answers 503 to everything, weights are kept for later."""
        raise OperationFailed(f"the {self.name} platform has no maintenance mode")

    # ---- database nodes -------------------------------------------------------------------
    def fence_database_node(self, node: str, progress: Progress = _noop) -> bool:
        """Stop database node `node` for certain (fencing an old primary, `ragops.db.replication.fence`).
        True when the platform stopped it or knows it is stopped; False (the default) when it cannot
        say, and the caller fences by SQL or asks for --confirm-down."""
        return False

    def rejoin_database_node(self, node: str, primary: str, progress: Progress = _noop) -> str | None:
        """Rebuild `node` as a streaming replica of `primary` with the platform's own means (its old
        data kept aside, never deleted) and return once it streams; returns the method used, or None
        (the default) when the platform has none and the caller rejoins a local data directory."""
        return None

    @classmethod
    def database_address(cls, config: Config, node: DbNode) -> tuple[str, int]:
        """(host, port) this process connects to for database node `node`: every connection of ragops
        (db status, backups, migrations, failover, drills) goes through ragops.db.connect.node_dsn,
        which asks here. The default: the configured node.host and node.port. A class method: the
        local and kubernetes platforms answer without being built."""
        return node.host, node.port

    @classmethod
    def database_node_at(cls, config: Config, host: str | None, port: int | None) -> str | None:
        """The node the database nodes know as `host:port` (a replica's upstream), where the platform
        gives them addresses of its own (docker: container names); None when it does not know it."""
        return None

    @classmethod
    def rejoins_database_nodes(cls, config: Config) -> bool:
        """Whether rejoin_database_node rebuilds this environment's nodes (asked before a change that
        relies on it, as `db switchover --rejoin`); False (the default) with no such means."""
        return False

    @classmethod
    def wal_spool_dir(cls, config: Config) -> Path | None:
        """Where the primary's archive_command leaves finished WAL segments on this machine (the WAL
        shipper's spool, ragops.pitr.wal.spool_dir) when backups.wal.spool_dir is unset; None (the
        default): beside the server's files, as the local platform's managed nodes have it."""
        return None

    @classmethod
    def wal_spool(cls, config: Config) -> Any:
        """The WAL shipper's spool when it is not a directory on this machine (docker: on an ssh host,
        through SFTP): an object with names/reader/archived_at/remove like ragops.pitr.wal.LocalSpool;
        None (the default): LocalSpool(spool_dir(config))."""
        return None

    # ---- state ------------------------------------------------------------------------------
    @abc.abstractmethod
    def lock_backend(self) -> LockBackend: ...

    @abc.abstractmethod
    def journal_dir(self) -> Path:
        """A directory for the deploy journal and history cache."""


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


def probe_color(url: str, service: ServiceConfig, client: httpx.Client | None = None) -> Probe:
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
