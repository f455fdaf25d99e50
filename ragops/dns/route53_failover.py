"""Route 53 failover routing: one health check per region endpoint and the PRIMARY/SECONDARY record
pair that uses them, so that Route 53 moves the record by itself when the primary region fails.

    setup_plan(provider)      what `ragops dns setup` would create or change (read-only calls only)
    setup_apply(provider, p)  create the missing health checks, then one change batch for the pair
    health_status(provider)   each health check's observations (get_health_check_status)
    pair_change(provider, to) the change `ragops dns failover --to` sends when the pair exists:
                              the PRIMARY record takes the target's value (and its health check), the
                              SECONDARY the other region's, so health checks keep guarding the new primary

Everything is validated (endpoints, path) before the first call to Route 53.
"""
from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field

from ragops.dns.base import fqdn, now_iso, record_change, record_name, require, same, target_value
from ragops.errors import ConfigError, OperationFailed
from ragops.secrets import redact

ROLES = ("primary", "secondary")
_HOST = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass
class CheckPlan:
    role: str
    endpoint: str
    config: dict
    id: str | None
    action: str             # create | update | keep


@dataclass
class RecordPlan:
    role: str
    set_identifier: str
    value: str
    health_check: str | None   # the id, or None until the check is created
    action: str                # create | update | keep


@dataclass
class SetupPlan:
    record: str
    type: str
    zone_id: str
    checks: list[CheckPlan]
    records: list[RecordPlan]
    replaces_simple: str | None      # the value of the plain record the pair replaces, if any
    change_needed: bool
    applied: bool = False
    change_id: str | None = None
    notes: list[str] = field(default_factory=list)


# ---- validation (no calls) ----------------------------------------------------------------------

def _key(config, role: str) -> str:
    region = config.env.regions.get(role)
    if region is not None and region.dns_value:
        return f"environments.{config.env_name}.regions.{role}.dns_value"
    return f"environments.{config.env_name}.dns.{role}"


def endpoint(config, role: str) -> str:
    """The region's public endpoint (host name or IP address), validated."""
    value = target_value(config, role).rstrip(".")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST.match(value) or "." not in value:
        raise ConfigError(f"{_key(config, role)}: {value!r} is not a host name or IP address "
                          "a Route 53 health check can probe")
    return value


def desired_checks(config) -> dict[str, dict]:
    require(config)
    hc = config.dns.health_checks
    if not hc.enabled:
        raise ConfigError(f"environments.{config.env_name}.dns.health_checks: not enabled "
                          "(set dns.health_checks: true to use Route 53 failover routing)")
    path = hc.path or config.service.health_path
    out = {}
    for role in ROLES:
        host = endpoint(config, role)
        cfg: dict = {"Type": hc.protocol, "Port": hc.effective_port(), "ResourcePath": path,
                     "RequestInterval": hc.interval, "FailureThreshold": hc.failure_threshold}
        try:
            ipaddress.ip_address(host)
            cfg["IPAddress"] = host
        except ValueError:
            cfg["FullyQualifiedDomainName"] = host
        out[role] = cfg
    if out["primary"].get("FullyQualifiedDomainName", out["primary"].get("IPAddress")) == \
            out["secondary"].get("FullyQualifiedDomainName", out["secondary"].get("IPAddress")):
        raise ConfigError(f"{_key(config, 'secondary')}: same endpoint as the primary region")
    return out


def set_identifier(config, role: str) -> str:
    return f"{config.env_name}-{role}"


# ---- reading Route 53 ---------------------------------------------------------------------------

def _target(cfg: dict) -> tuple:
    return (cfg.get("Type"), cfg.get("FullyQualifiedDomainName") or cfg.get("IPAddress"), cfg.get("Port"))


def existing_checks(client) -> list[dict]:
    checks, marker = [], None
    while True:
        out = client.list_health_checks(**({"Marker": marker} if marker else {}))
        checks.extend(out.get("HealthChecks", []))
        if not out.get("IsTruncated"):
            return checks
        marker = out.get("NextMarker")


def record_sets(provider, zone: str) -> list[dict]:
    dns = provider.config.dns
    name = fqdn(dns.record)
    out = provider.client.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name,
                                                    StartRecordType=dns.type, MaxItems="20")
    return [r for r in out.get("ResourceRecordSets", []) if same(r["Name"], name) and r["Type"] == dns.type]


def failover_pair(rrsets: list[dict]) -> dict[str, dict]:
    """{"primary": rrset, "secondary": rrset} for the records with Failover routing."""
    return {r["Failover"].lower(): r for r in rrsets if r.get("Failover")}


def _value(rrset: dict | None) -> str | None:
    return rrset["ResourceRecords"][0]["Value"] if rrset and rrset.get("ResourceRecords") else None


# ---- the plan -----------------------------------------------------------------------------------

def _check_plans(config, client, notes: list[str]) -> list[CheckPlan]:
    wanted = desired_checks(config)
    found = existing_checks(client)
    plans = []
    for role, cfg in wanted.items():
        match = next((c for c in found if _target(c["HealthCheckConfig"]) == _target(cfg)), None)
        if match is None:
            plans.append(CheckPlan(role, _target(cfg)[1], cfg, None, "create"))
            continue
        have = match["HealthCheckConfig"]
        same_cfg = all(have.get(k) == v for k, v in cfg.items() if k != "RequestInterval")
        if have.get("RequestInterval") != cfg["RequestInterval"]:
            notes.append(f"health check {match['Id']} probes every {have.get('RequestInterval')}s; Route 53 cannot "
                         f"change the interval of an existing check (delete it and run setup again for "
                         f"{cfg['RequestInterval']}s)")
        plans.append(CheckPlan(role, _target(cfg)[1], cfg, match["Id"], "keep" if same_cfg else "update"))
    return plans


def _record_plans(config, checks: list[CheckPlan], rrsets: list[dict]) -> tuple[list[RecordPlan], str | None]:
    pair = failover_pair(rrsets)
    others = [r for r in rrsets if not r.get("Failover") and r.get("SetIdentifier")]
    if others:
        raise ConfigError(f"environments.{config.env_name}.dns.record: {record_name(config)} uses another routing "
                          f"policy (set {others[0]['SetIdentifier']!r}); ragops manages only simple or failover records")
    simple = next((r for r in rrsets if not r.get("SetIdentifier")), None)
    ttl = config.dns.ttl
    # a pair that `dns failover` swapped stays swapped: keep its values, check only ids and TTL
    values = {role: target_value(config, role) for role in ROLES}
    if set(pair) == set(ROLES) and {fqdn(_value(pair[r])) for r in ROLES} == {fqdn(v) for v in values.values()}:
        values = {role: _value(pair[role]) or values[role] for role in ROLES}
    by_endpoint = {c.endpoint.rstrip(".").lower(): c for c in checks}
    plans = []
    for role in ROLES:
        value = values[role]
        check = by_endpoint.get(value.rstrip(".").lower()) or next(c for c in checks if c.role == role)
        have = pair.get(role)
        if have is None:
            action = "create"
        elif (same(_value(have), value) and have.get("TTL") == ttl and check.id
              and have.get("HealthCheckId") == check.id and have.get("SetIdentifier") == set_identifier(config, role)):
            action = "keep"
        else:
            action = "update"
        plans.append(RecordPlan(role, set_identifier(config, role), value, check.id, action))
    return plans, _value(simple) if simple else None


def setup_plan(provider) -> SetupPlan:
    config = provider.config
    desired_checks(config)                      # validate before the first call
    zone = provider.zone_id()
    notes: list[str] = []
    checks = _check_plans(config, provider.client, notes)
    rrsets = record_sets(provider, zone)
    records, simple = _record_plans(config, checks, rrsets)
    needed = any(c.action != "keep" for c in checks) or any(r.action != "keep" for r in records) or simple is not None
    return SetupPlan(record=record_name(config), type=config.dns.type, zone_id=zone, checks=checks,
                     records=records, replaces_simple=simple, change_needed=needed, notes=notes)


# ---- applying -----------------------------------------------------------------------------------

def _rrset(config, rec: RecordPlan) -> dict:
    dns = config.dns
    return {"Name": fqdn(dns.record), "Type": dns.type, "TTL": dns.ttl, "SetIdentifier": rec.set_identifier,
            "Failover": rec.role.upper(), "HealthCheckId": rec.health_check,
            "ResourceRecords": [{"Value": rec.value}]}


def _ensure_check(provider, check: CheckPlan) -> None:
    client = provider.client
    try:
        if check.action == "create":
            ref = f"ragops-{provider.config.env_name}-{check.role}-{uuid.uuid4().hex[:12]}"
            check.id = client.create_health_check(CallerReference=ref, HealthCheckConfig=check.config)["HealthCheck"]["Id"]
        elif check.action == "update":
            cfg = {k: v for k, v in check.config.items() if k not in ("Type", "RequestInterval")}
            client.update_health_check(HealthCheckId=check.id, **cfg)
    except Exception as exc:  # noqa: BLE001 - botocore errors become one line
        raise OperationFailed(f"Route 53 rejected the health check for {check.endpoint}: {redact(str(exc))}",
                              hint="fix the cause and run `ragops dns setup --yes` again (it is idempotent)") from None


def setup_apply(provider, plan: SetupPlan) -> SetupPlan:
    """Create/update the health checks, then send the record pair in one change batch."""
    if not plan.change_needed:
        return plan
    for check in plan.checks:
        _ensure_check(provider, check)
    ids = {c.role: c.id for c in plan.checks}
    by_endpoint = {c.endpoint.rstrip(".").lower(): c.id for c in plan.checks}
    changes = []
    if plan.replaces_simple is not None:
        simple = next(r for r in record_sets(provider, plan.zone_id) if not r.get("SetIdentifier"))
        changes.append({"Action": "DELETE", "ResourceRecordSet": simple})
    for rec in plan.records:
        rec.health_check = by_endpoint.get(rec.value.rstrip(".").lower(), ids[rec.role])
        changes.append({"Action": "UPSERT", "ResourceRecordSet": _rrset(provider.config, rec)})
    batch = {"Comment": f"ragops: {provider.config.env_name} failover record pair", "Changes": changes}
    try:
        out = provider.client.change_resource_record_sets(HostedZoneId=plan.zone_id, ChangeBatch=batch)
    except Exception as exc:  # noqa: BLE001
        raise OperationFailed(f"Route 53 rejected the failover records of {plan.record}: {redact(str(exc))}",
                              hint="the health checks exist; fix the cause and run `ragops dns setup --yes` again") from None
    plan.change_id = out["ChangeInfo"]["Id"].split("/")[-1]
    record_change(provider.config, {"at": now_iso(), "env": provider.config.env_name, "provider": provider.name,
                                    "change_id": plan.change_id, "record": plan.record, "type": plan.type,
                                    "old": plan.replaces_simple, "new": ", ".join(r.value for r in plan.records),
                                    "ttl": provider.config.dns.ttl, "to": "failover-pair",
                                    "status": out["ChangeInfo"].get("Status")})
    provider.wait_insync(plan.change_id, timeout=provider.config.dns.sync_timeout)
    plan.applied = True
    return plan


# ---- status and `dns failover` with the pair ----------------------------------------------------

def health_status(provider) -> list[dict]:
    """Each region's health check and what Route 53's checkers last observed."""
    zone = provider.zone_id()
    pair = failover_pair(record_sets(provider, zone))
    rows = []
    for role in ROLES:
        rrset = pair.get(role)
        check_id = rrset.get("HealthCheckId") if rrset else None
        row = {"role": role, "set_identifier": rrset.get("SetIdentifier") if rrset else None,
               "value": _value(rrset), "ttl": rrset.get("TTL") if rrset else None, "health_check": check_id,
               "status": "missing", "observations": 0, "healthy": 0}
        if check_id:
            obs = provider.client.get_health_check_status(HealthCheckId=check_id).get("HealthCheckObservations", [])
            healthy = sum(1 for o in obs if o.get("StatusReport", {}).get("Status", "").startswith("Success"))
            row.update(observations=len(obs), healthy=healthy,
                       status="no observations yet" if not obs else ("healthy" if healthy * 2 > len(obs) else "unhealthy"))
        rows.append(row)
    return rows


def pair_change(provider, to: str, pair: dict[str, dict]) -> tuple[str | None, str, dict, bool]:
    """(old primary value, new value, change batch, change needed) that makes `to` the PRIMARY."""
    config = provider.config
    new = target_value(config, to)
    old = _value(pair.get("primary"))
    values = [_value(pair.get(r)) for r in ROLES]
    other = next((v for v in values if v and not same(v, new)), None)
    if other is None:
        other = target_value(config, "secondary" if same(new, target_value(config, "primary")) else "primary")
    checks = {(_value(r) or "").rstrip(".").lower(): r.get("HealthCheckId") for r in pair.values()}
    wanted = {"primary": new, "secondary": other}
    changes = []
    for role, value in wanted.items():
        rec = RecordPlan(role, set_identifier(config, role), value, checks.get(value.rstrip(".").lower()), "update")
        rrset = _rrset(config, rec)
        if rec.health_check is None:
            rrset.pop("HealthCheckId")
        changes.append({"Action": "UPSERT", "ResourceRecordSet": rrset})
    needed = not (same(old, new) and same(_value(pair.get("secondary")), other))
    batch = {"Comment": f"ragops: {config.env_name} failover records, PRIMARY to {to}", "Changes": changes}
    return old, new, batch, needed
