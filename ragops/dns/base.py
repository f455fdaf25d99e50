"""The DnsProvider interface: where the service's record points, and moving it between regions.

    status()            where the record points now (primary, secondary, other, missing)
    plan(to)            the change that would point it at `to` (nothing sent)
    apply(plan)         send the change once, then wait_insync()
    wait_insync(id)     poll the provider until the change is live everywhere, with a timeout
    history(limit)      the journalled changes
    setup_plan(), setup_apply(plan), health_status()   optional: health-checked failover records

A provider is a module with one class and one line in ragops.dns.registry.PROVIDERS, chosen by
`dns.provider` in ragops.yaml. Every submitted change goes through record_change(), the one place that writes the
DNS journal (<state_dir>/dns-changes.jsonl), redacted like every other journal.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ragops import journal
from ragops.errors import ConfigError, UsageError
from ragops.events import MaybeSay as Progress
from ragops.secrets import redact

JOURNAL = "dns-changes.jsonl"


@dataclass
class DnsStatus:
    record: str
    type: str
    zone_id: str
    value: str | None
    ttl: int | None
    primary: str
    secondary: str
    points_to: str          # primary | secondary | other | missing


@dataclass
class DnsPlan:
    record: str
    type: str
    zone_id: str
    old: str | None
    new: str
    ttl: int
    to: str
    change_needed: bool
    change_batch: dict = field(default_factory=dict)   # the provider's request, as it will be sent


@dataclass
class DnsChange:
    plan: DnsPlan
    change_id: str | None
    status: str             # INSYNC | unchanged
    submitted_at: str | None
    insync_at: str | None
    seconds: float
    polls: int


class DnsProvider(ABC):
    """One DNS service. `client` replaces the SDK client (tests pass a fake)."""

    name: str = ""

    def __init__(self, config, client=None):
        self.config = config
        self._client = client

    @abstractmethod
    def status(self) -> DnsStatus: ...

    @abstractmethod
    def plan(self, to: str = "secondary") -> DnsPlan: ...

    @abstractmethod
    def apply(self, the_plan: DnsPlan, *, interval: float = 1.0, timeout: float | None = None,
              progress: Progress = None, sleep: Callable[[float], None] | None = None) -> DnsChange: ...

    @abstractmethod
    def wait_insync(self, change_id: str, *, timeout: float, interval: float = 1.0, progress: Progress = None,
                    sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], float] | None = None) -> tuple[str, int]:
        """Poll until the change is live; returns (status, polls). Raises OperationFailed on timeout."""

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        return read_history(self.config, limit)

    # Failover routing with health checks (`ragops dns setup`); optional for a provider.
    def setup_plan(self) -> Any:
        raise UsageError(f"DNS provider {self.name!r} has no health-checked failover records")

    def setup_apply(self, the_plan: Any) -> Any:
        raise UsageError(f"DNS provider {self.name!r} has no health-checked failover records")

    def health_status(self) -> list[dict[str, Any]]:
        raise UsageError(f"DNS provider {self.name!r} has no health checks")


# ---- what every provider shares ---------------------------------------------------------------

def say(progress: Progress, message: str) -> None:
    if progress:
        progress(redact(message))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def fqdn(name: str | None) -> str | None:
    if name is None:
        return None
    return name if name.endswith(".") else name + "."


def same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return (fqdn(a) or "").lower() == (fqdn(b) or "").lower()


def configured(config) -> bool:
    dns = config.dns
    return bool(dns.record and (dns.zone or dns.zone_id) and dns.primary and dns.secondary)


def record_name(config) -> str:
    """The record's fully qualified name; require() has made sure it is set."""
    name = fqdn(config.dns.record)
    if name is None:
        raise ConfigError(f"environments.{config.env_name}.dns.record: required for DNS failover")
    return name


def require(config) -> None:
    dns = config.dns
    prefix = f"environments.{config.env_name}.dns"
    for key in ("record", "primary", "secondary"):
        if not getattr(dns, key):
            raise ConfigError(f"{prefix}.{key}: required for DNS failover")
    if not (dns.zone or dns.zone_id):
        raise ConfigError(f"{prefix}.zone: required (or zone_id) for DNS failover")


def target_value(config, to: str) -> str:
    """`primary`/`secondary` (dns.primary/dns.secondary), or a region name with a dns_value."""
    dns = config.dns
    if to in ("primary", "secondary") and getattr(dns, to):
        regions = config.env.regions
        if to in regions and regions[to].dns_value:
            return regions[to].dns_value
        return getattr(dns, to)
    region = config.env.regions.get(to)
    if region is not None and region.dns_value:
        return region.dns_value
    if region is not None:   # a region without its own value: its role decides
        primary_db = config.database.primary.name
        return dns.primary if region.database_node == primary_db else dns.secondary
    raise UsageError(f"unknown DNS target {to!r} (expected primary, secondary or a region: "
                     f"{', '.join(config.env.regions) or 'none configured'})")


def points_to(config, value: str | None) -> str:
    """primary | secondary | other | missing, for the record's current value."""
    dns = config.dns
    if value is None:
        return "missing"
    if same(value, target_value(config, "primary")) or same(value, dns.primary):
        return "primary"
    if same(value, target_value(config, "secondary")) or same(value, dns.secondary):
        return "secondary"
    return "other"


# ---- the journal ------------------------------------------------------------------------------

def record_change(config, entry: dict) -> None:
    """Append one DNS change record, redacted and fsynced (the one write to the DNS journal)."""
    journal.append(config.state_dir / JOURNAL, entry)


def read_history(config, limit: int = 20) -> list[dict[str, Any]]:
    return journal.read(config.state_dir / JOURNAL, limit)
