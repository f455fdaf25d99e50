"""Route 53: where the service's record points, and moving it between regions.

One change batch (UPSERT), then GetChange polled every second or two until INSYNC (boto3's waiter
polls every 30 s), with a timeout. Every submitted change is journalled in
<state_dir>/dns-changes.jsonl. boto3 is imported inside the functions that need it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ragops.errors import ConfigError, OperationFailed, UsageError
from ragops.secrets import redact

Progress = Callable[[str], None] | None


def _say(progress: Progress, message: str) -> None:
    if progress:
        progress(redact(message))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _fqdn(name: str | None) -> str | None:
    if name is None:
        return None
    return name if name.endswith(".") else name + "."


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and _fqdn(a).lower() == _fqdn(b).lower()


def configured(config) -> bool:
    dns = config.dns
    return bool(dns.record and (dns.zone or dns.zone_id) and dns.primary and dns.secondary)


def _require(config) -> None:
    dns = config.dns
    prefix = f"environments.{config.env_name}.dns"
    for key in ("record", "primary", "secondary"):
        if not getattr(dns, key):
            raise ConfigError(f"{prefix}.{key}: required for DNS failover")
    if not (dns.zone or dns.zone_id):
        raise ConfigError(f"{prefix}.zone: required (or zone_id) for DNS failover")


def client(config):
    import boto3

    return boto3.client("route53", endpoint_url=config.dns.endpoint_url, region_name=config.dns.region)


def zone_id(config, route53) -> str:
    dns = config.dns
    if dns.zone_id:
        return dns.zone_id.split("/")[-1]
    zone = _fqdn(dns.zone)
    found = route53.list_hosted_zones_by_name(DNSName=zone, MaxItems="1").get("HostedZones", [])
    if not found or not _same(found[0]["Name"], zone):
        raise ConfigError(f"environments.{config.env_name}.dns.zone: hosted zone {zone!r} not found")
    return found[0]["Id"].split("/")[-1]


def current_record(config, route53, zone: str) -> dict | None:
    dns = config.dns
    name = _fqdn(dns.record)
    out = route53.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name, StartRecordType=dns.type,
                                            MaxItems="1")
    for rrset in out.get("ResourceRecordSets", []):
        if _same(rrset["Name"], name) and rrset["Type"] == dns.type:
            return rrset
    return None


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


def change_batch(record: str, rtype: str, value: str, ttl: int, comment: str) -> dict:
    """The guide's change batch (templates/route53-failover.json): one UPSERT."""
    return {"Comment": comment,
            "Changes": [{"Action": "UPSERT",
                         "ResourceRecordSet": {"Name": _fqdn(record), "Type": rtype, "TTL": ttl,
                                               "ResourceRecords": [{"Value": value}]}}]}


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
    change_batch: dict = field(default_factory=dict)


@dataclass
class DnsChange:
    plan: DnsPlan
    change_id: str | None
    status: str             # INSYNC | unchanged
    submitted_at: str | None
    insync_at: str | None
    seconds: float
    polls: int


def status(config, route53=None) -> DnsStatus:
    _require(config)
    route53 = route53 or client(config)
    zone = zone_id(config, route53)
    rrset = current_record(config, route53, zone)
    dns = config.dns
    value = rrset["ResourceRecords"][0]["Value"] if rrset and rrset.get("ResourceRecords") else None
    points = "missing" if value is None else "primary" if _same(value, target_value(config, "primary")) or \
        _same(value, dns.primary) else "secondary" if _same(value, target_value(config, "secondary")) or \
        _same(value, dns.secondary) else "other"
    return DnsStatus(record=_fqdn(dns.record), type=dns.type, zone_id=zone, value=value,
                     ttl=rrset.get("TTL") if rrset else None, primary=dns.primary, secondary=dns.secondary,
                     points_to=points)


def plan(config, to: str = "secondary", route53=None) -> DnsPlan:
    _require(config)
    route53 = route53 or client(config)
    zone = zone_id(config, route53)
    rrset = current_record(config, route53, zone)
    old = rrset["ResourceRecords"][0]["Value"] if rrset and rrset.get("ResourceRecords") else None
    new = target_value(config, to)
    dns = config.dns
    batch = change_batch(dns.record, dns.type, new, dns.ttl, f"ragops: {config.env_name} DNS to {to}")
    return DnsPlan(record=_fqdn(dns.record), type=dns.type, zone_id=zone, old=old, new=new, ttl=dns.ttl, to=to,
                   change_needed=not (_same(old, new) and rrset and rrset.get("TTL") == dns.ttl),
                   change_batch=batch)


def wait_insync(route53, change_id: str, *, timeout: float, interval: float = 1.0, progress: Progress = None,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> tuple[str, int]:
    """Poll GetChange until INSYNC; returns (status, polls). Raises OperationFailed on timeout."""
    deadline = clock() + timeout
    polls = 0
    state = "PENDING"
    while True:
        polls += 1
        state = route53.get_change(Id=change_id)["ChangeInfo"]["Status"]
        if state == "INSYNC":
            return state, polls
        remaining = deadline - clock()
        if remaining <= 0:
            raise OperationFailed(
                f"Route 53 change {change_id} still {state} after {timeout:.0f}s ({polls} polls)",
                hint="the change was accepted and will apply; check it later with `ragops dns status` "
                     "(resolvers follow within the record's TTL)")
        _say(progress, f"change {change_id}: {state}, polling again in {interval:.0f}s")
        sleep(min(interval, max(remaining, 0.05)))


def _journal(config, entry: dict) -> None:
    from ragops import journal       # redacted, fsynced, never through a symlink

    journal.append(config.state_dir / "dns-changes.jsonl", entry)


def apply(config, the_plan: DnsPlan, *, route53=None, interval: float = 1.0, timeout: float | None = None,
          progress: Progress = None, sleep: Callable[[float], None] = time.sleep) -> DnsChange:
    """Send the plan's change batch once and wait until Route 53 reports it INSYNC."""
    route53 = route53 or client(config)
    started = time.monotonic()
    if not the_plan.change_needed:
        _say(progress, f"{the_plan.record} already points to {the_plan.new} (TTL {the_plan.ttl}); nothing to change")
        return DnsChange(plan=the_plan, change_id=None, status="unchanged", submitted_at=None, insync_at=None,
                         seconds=0.0, polls=0)
    _say(progress, f"UPSERT {the_plan.record} {the_plan.type} {the_plan.old} -> {the_plan.new} (TTL {the_plan.ttl})")
    try:
        out = route53.change_resource_record_sets(HostedZoneId=the_plan.zone_id, ChangeBatch=the_plan.change_batch)
    except Exception as exc:  # noqa: BLE001 - botocore errors become one line
        raise OperationFailed(f"Route 53 rejected the change of {the_plan.record}: {redact(str(exc))}",
                              hint="nothing was changed; fix the cause and repeat") from None
    change_id = out["ChangeInfo"]["Id"].split("/")[-1]
    submitted = _now()
    entry = {"at": submitted, "env": config.env_name, "change_id": change_id, "record": the_plan.record,
             "type": the_plan.type, "old": the_plan.old, "new": the_plan.new, "ttl": the_plan.ttl,
             "to": the_plan.to, "status": out["ChangeInfo"].get("Status")}
    _journal(config, entry)
    _say(progress, f"change {change_id} submitted ({entry['status']})")
    state, polls = wait_insync(route53, change_id, timeout=timeout if timeout is not None else config.dns.sync_timeout,
                               interval=interval, progress=progress, sleep=sleep)
    insync = _now()
    _journal(config, {**entry, "at": insync, "status": state, "polls": polls})
    seconds = round(time.monotonic() - started, 3)
    _say(progress, f"change {change_id} INSYNC after {seconds:.1f}s ({polls} polls)")
    return DnsChange(plan=the_plan, change_id=change_id, status=state, submitted_at=submitted, insync_at=insync,
                     seconds=seconds, polls=polls)


def failover(config, to: str = "secondary", *, dry_run: bool = False, progress: Progress = None,
             route53=None, interval: float = 1.0) -> DnsPlan | DnsChange:
    route53 = route53 or client(config)
    the_plan = plan(config, to, route53=route53)
    if dry_run:
        return the_plan
    return apply(config, the_plan, route53=route53, interval=interval, progress=progress)


def failback(config, *, dry_run: bool = False, progress: Progress = None, route53=None,
             interval: float = 1.0) -> DnsPlan | DnsChange:
    return failover(config, "primary", dry_run=dry_run, progress=progress, route53=route53, interval=interval)


def history(config, limit: int = 20) -> list[dict[str, Any]]:
    from ragops import journal

    return journal.read(config.state_dir / "dns-changes.jsonl", limit)
