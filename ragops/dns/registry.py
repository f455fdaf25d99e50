"""DNS providers by name (`dns.provider`), and the failover every caller uses.

Adding a provider: a module with a DnsProvider subclass, and one line in PROVIDERS.
"""
from __future__ import annotations

from collections.abc import Callable

from ragops.dns.base import DnsChange, DnsPlan, DnsProvider, Progress
from ragops.errors import ConfigError


def _route53() -> type[DnsProvider]:
    from ragops.dns.route53 import Route53

    return Route53


PROVIDERS: dict[str, Callable[[], type[DnsProvider]]] = {"route53": _route53}


def get_provider(config, client=None) -> DnsProvider:
    """The provider `dns.provider` names, for this environment."""
    name = config.dns.provider
    factory = PROVIDERS.get(name)
    if factory is None:
        raise ConfigError(f"environments.{config.env_name}.dns.provider: unknown provider {name!r} "
                          f"(known: {', '.join(sorted(PROVIDERS))})")
    return factory()(config, client)


def failover(config, to: str = "secondary", *, dry_run: bool = False, progress: Progress = None,
             client=None, interval: float = 1.0) -> DnsPlan | DnsChange:
    """Point the record at `to` (primary, secondary or a region) and wait until it is live."""
    provider = get_provider(config, client)
    the_plan = provider.plan(to)
    if dry_run:
        return the_plan
    return provider.apply(the_plan, interval=interval, progress=progress)


def failback(config, *, dry_run: bool = False, progress: Progress = None, client=None,
             interval: float = 1.0) -> DnsPlan | DnsChange:
    return failover(config, "primary", dry_run=dry_run, progress=progress, client=client, interval=interval)
