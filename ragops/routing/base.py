"""The Router interface: how a platform changes and reads the traffic split between colors.

Modelled on Argo Rollouts' traffic routers (SetWeight / VerifyWeight): `apply` changes what the
router serves, `confirm` waits until the router itself reports it and says how long that took,
`live_weights` reads the router back, `desired` reads the router's own config file.

File I/O goes through a `ConfigStore` (read_text / write_text, atomic), so the same router code
writes to a local folder (local platform) or to a folder on a Docker host over SFTP.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ragops.errors import UsageError
from ragops.fsutil import write_atomic


class ConfigStore(Protocol):
    """A folder the router's config lives in; names are relative ('dynamic/ragops.yml')."""

    def read_text(self, name: str) -> str | None: ...        # None when the file does not exist

    def write_text(self, name: str, text: str) -> None: ...  # atomic: readers never see half a file

    def makedirs(self, name: str) -> None: ...


class FileStore:
    """A ConfigStore on this machine."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, name: str) -> str:
        return str(self.root / name)

    def makedirs(self, name: str) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    def read_text(self, name: str) -> str | None:
        try:
            return (self.root / name).read_text()
        except FileNotFoundError:
            return None

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.root / name, text)


@dataclass(frozen=True)
class PeopleRouting:
    """Routing for people during a canary: a header that picks a side whatever the weights
    (`X-Canary: always` -> the canary, `never` -> the stable color), and sticky sessions (a cookie
    keeps each client on the color it first got)."""
    header: str = "X-Canary"
    sticky: bool = False
    cookie: str = "ragops_color"


def sides(backends: dict[str, str], weights: dict[str, int]) -> tuple[str, str] | None:
    """(stable, other) when two colors run: the stable one carries the larger weight; the other is the
    canary during a deploy (at any weight, 0 included) and the warm previous version after one."""
    running = sorted(backends)
    if len(running) != 2:
        return None
    stable = max(running, key=lambda c: (weights.get(c, 0), c == running[0]))
    return stable, next(c for c in running if c != stable)


# The canary header's meaning, one definition for every router (Traefik file and CRD, HAProxy):
# its values are every line of the header and every comma-separated item in them, compared without
# case and without surrounding spaces. `always` among them (and not `never`) -> the other color;
# `never` (and not `always`) -> the stable one; both, neither, or no header -> the weights decide.
PEOPLE_VALUES = ("always", "never")


def people_item_regexp(value: str) -> str:
    """A Go regexp matching one header line that holds `value` as one of its comma-separated items."""
    return rf"(?i)(^|,)\s*{value}\s*(,|$)"


def traefik_people_rule(header: str, value: str) -> str:
    """The Traefik rule of PEOPLE_VALUES' `value` (HeaderRegexp tries every line of the header)."""
    other = next(v for v in PEOPLE_VALUES if v != value)
    return (f"HeaderRegexp(`{header}`, `{people_item_regexp(value)}`) && "
            f"!HeaderRegexp(`{header}`, `{people_item_regexp(other)}`)")


def people_targets(backends: dict[str, str], weights: dict[str, int]) -> dict[str, str]:
    """Header value -> color for routing people (PeopleRouting): `always` the other color, `never` the
    stable one; empty unless two colors run and the stable one has traffic."""
    pair = sides(backends, weights)
    if pair is None or weights.get(pair[0], 0) <= 0:
        return {}
    return {"always": pair[1], "never": pair[0]}


@dataclass(frozen=True)
class Mirror:
    """Shadow traffic: `percent` of the live requests are copied to `color`, whose answers are
    dropped (clients only ever get the live color's). Reads only (GET/HEAD) unless `writes`: a
    mirrored POST/PUT/PATCH/DELETE would be applied a second time to the shared database."""
    color: str
    percent: int = 100
    writes: bool = False


@dataclass
class RouterState:
    """What a router's config file says: color -> URL, color -> weight (0..100), maintenance."""
    backends: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    maintenance: bool = False


class Router(ABC):
    """One router instance. `listen`/`api` are the addresses as the router binds them; `reach` is
    how ragops reaches the API (differs in docker bridge mode or through an ssh tunnel)."""

    kind: str = ""

    def __init__(self, *, listen: str, api: str, store: ConfigStore, health_path: str = "/readyz",
                 reach: str | Callable[[], str] | None = None, log_dir: Path | None = None,
                 colors: dict[str, str] | None = None, bundled: bool = False,
                 people: PeopleRouting | None = None):
        self.listen = listen
        self.people = people or PeopleRouting()
        # True when the platform runs `binary()` (local), whose version ragops knows: config keys a
        # user-chosen router image (docker's router.image) might not know can then be used
        self.bundled = bundled
        # every color -> URL the platform may route to: a router that declares its servers up front
        # (haproxy) then never reloads because a color started or stopped
        self.colors = dict(colors or {})
        self.api = api
        self.store = store
        self.health_path = health_path
        self._reach = reach
        self.log_dir = log_dir

    def api_address(self) -> str:
        """host:port of the router's API from here (`reach` may be a callable: tunnels open lazily)."""
        if self._reach is None:
            return self.api
        return self._reach() if callable(self._reach) else self._reach

    # ---- change and confirm --------------------------------------------------------------
    @abstractmethod
    def apply(self, backends: dict[str, str], weights: dict[str, int], maintenance: bool) -> None:
        """Write the config (atomically) and/or call the runtime API so the router serves this."""

    @abstractmethod
    def confirm(self, weights: dict[str, int], timeout: float) -> float:
        """Wait until the router reports `weights` (zero weights omitted); seconds it took.
        Raises OperationFailed after `timeout`."""

    @abstractmethod
    def live_weights(self) -> dict[str, int] | None:
        """The weights (> 0) the router serves right now, read from the router; None if it does not answer."""

    @abstractmethod
    def desired(self) -> RouterState:
        """The state in the router's own config file (empty when there is none)."""

    @abstractmethod
    def ready(self) -> bool:
        """True when the router answers its health endpoint."""

    # ---- shadow traffic (a capability: routers that can copy requests override these) ------
    #: can mirror a share of live traffic to a color without returning its answers (shadow deploys)
    supports_mirroring: bool = False

    def check_mirroring(self) -> None:
        """Raise UsageError (one line naming this router) unless it can mirror traffic."""
        if not self.supports_mirroring:
            raise UsageError(f"router {self.kind}: cannot mirror traffic, so it cannot run a shadow deploy",
                             hint="deploy with --strategy canary or blue-green, or use the traefik router")

    def set_mirror(self, mirror: Mirror | None) -> None:
        """Start copying traffic as `mirror` says (None: stop mirroring). Weights are not touched."""
        self.check_mirroring()

    def mirror(self) -> Mirror | None:
        """The mirror in the router's config (None when it mirrors nothing)."""
        return None

    def confirm_mirror(self, mirror: Mirror | None, timeout: float) -> float:
        """Wait until the router itself serves `mirror` (None: no mirror); seconds it took."""
        return 0.0

    # ---- raw config, so a multi-host change can be undone ---------------------------------
    @abstractmethod
    def snapshot(self) -> str | None:
        """The config file's text as it is now."""

    @abstractmethod
    def restore(self, text: str) -> None:
        """Put back a snapshot."""

    # ---- routers run as a process (local platform) or container (docker) -------------------
    def binary(self) -> str:
        raise NotImplementedError(f"router.kind {self.kind} is not run by ragops")

    def prepare(self, root: str) -> None:
        """Write the static config (and an empty dynamic one if none). `root` is the store's folder
        as the router process sees it (a container mount point on docker)."""
        raise NotImplementedError(f"router.kind {self.kind} is not run by ragops")

    def start_args(self, root: str) -> list[str]:
        """Arguments after the binary. The router must stay in the foreground (ragops tracks the pid)."""
        raise NotImplementedError(f"router.kind {self.kind} is not run by ragops")
