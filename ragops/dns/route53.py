"""Route 53 as a DnsProvider: one change batch (UPSERT), then GetChange polled every second or
two until INSYNC (boto3's waiter polls every 30 s), with a timeout. boto3 is imported inside the
functions that need it.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from ragops.dns.base import (
    DnsChange,
    DnsPlan,
    DnsProvider,
    DnsStatus,
    Progress,
    fqdn,
    now_iso,
    points_to,
    record_change,
    record_name,
    require,
    same,
    say,
    target_value,
)
from ragops.errors import ConfigError, OperationFailed
from ragops.secrets import redact


def client(config):
    import boto3

    return boto3.client("route53", endpoint_url=config.dns.endpoint_url, region_name=config.dns.region)


def change_batch(record: str, rtype: str, value: str, ttl: int, comment: str) -> dict:
    """The guide's change batch (templates/route53-failover.json): one UPSERT."""
    return {"Comment": comment,
            "Changes": [{"Action": "UPSERT",
                         "ResourceRecordSet": {"Name": fqdn(record), "Type": rtype, "TTL": ttl,
                                               "ResourceRecords": [{"Value": value}]}}]}


class Route53(DnsProvider):
    name = "route53"

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.config)
        return self._client

    def zone_id(self) -> str:
        dns = self.config.dns
        if dns.zone_id:
            return dns.zone_id.split("/")[-1]
        zone = fqdn(dns.zone)
        found = self.client.list_hosted_zones_by_name(DNSName=zone, MaxItems="1").get("HostedZones", [])
        if not found or not same(found[0]["Name"], zone):
            raise ConfigError(f"environments.{self.config.env_name}.dns.zone: hosted zone {zone!r} not found")
        return found[0]["Id"].split("/")[-1]

    def current_record(self, zone: str) -> dict | None:
        dns = self.config.dns
        name = fqdn(dns.record)
        out = self.client.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name,
                                                    StartRecordType=dns.type, MaxItems="2")
        found = [r for r in out.get("ResourceRecordSets", []) if same(r["Name"], name) and r["Type"] == dns.type]
        # with a failover pair (`ragops dns setup`), the PRIMARY record is the one that answers
        return next((r for r in found if r.get("Failover") == "PRIMARY"), found[0] if found else None)

    def status(self) -> DnsStatus:
        require(self.config)
        zone = self.zone_id()
        rrset = self.current_record(zone)
        dns = self.config.dns
        value = rrset["ResourceRecords"][0]["Value"] if rrset and rrset.get("ResourceRecords") else None
        return DnsStatus(record=record_name(self.config), type=dns.type, zone_id=zone, value=value,
                         ttl=rrset.get("TTL") if rrset else None, primary=dns.primary, secondary=dns.secondary,
                         points_to=points_to(self.config, value))

    def plan(self, to: str = "secondary") -> DnsPlan:
        require(self.config)
        zone = self.zone_id()
        rrset = self.current_record(zone)
        old = rrset["ResourceRecords"][0]["Value"] if rrset and rrset.get("ResourceRecords") else None
        new = target_value(self.config, to)
        dns = self.config.dns
        if rrset is not None and rrset.get("Failover"):     # the pair: PRIMARY takes `to`, SECONDARY the other
            from ragops.dns.route53_failover import failover_pair, pair_change, record_sets

            old, new, batch, needed = pair_change(self, to, failover_pair(record_sets(self, zone)))
            return DnsPlan(record=record_name(self.config), type=dns.type, zone_id=zone, old=old, new=new,
                           ttl=dns.ttl, to=to, change_needed=needed, change_batch=batch)
        batch = change_batch(dns.record, dns.type, new, dns.ttl, f"ragops: {self.config.env_name} DNS to {to}")
        return DnsPlan(record=record_name(self.config), type=dns.type, zone_id=zone, old=old, new=new, ttl=dns.ttl, to=to,
                       change_needed=not (same(old, new) and rrset and rrset.get("TTL") == dns.ttl),
                       change_batch=batch)

    def wait_insync(self, change_id: str, *, timeout: float, interval: float = 1.0, progress: Progress = None,
                    sleep: Callable[[float], None] | None = None,
                    clock: Callable[[], float] | None = None) -> tuple[str, int]:
        sleep = sleep or time.sleep
        clock = clock or time.monotonic
        deadline = clock() + timeout
        polls = 0
        while True:
            polls += 1
            state = self.client.get_change(Id=change_id)["ChangeInfo"]["Status"]
            if state == "INSYNC":
                return state, polls
            remaining = deadline - clock()
            if remaining <= 0:
                raise OperationFailed(
                    f"Route 53 change {change_id} still {state} after {timeout:.0f}s ({polls} polls)",
                    hint="the change was accepted and will apply; check it later with `ragops dns status` "
                         "(resolvers follow within the record's TTL)")
            say(progress, f"change {change_id}: {state}, polling again in {interval:.0f}s")
            sleep(min(interval, max(remaining, 0.05)))

    def apply(self, the_plan: DnsPlan, *, interval: float = 1.0, timeout: float | None = None,
              progress: Progress = None, sleep: Callable[[float], None] | None = None) -> DnsChange:
        """Send the plan's change batch once and wait until Route 53 reports it INSYNC."""
        started = time.monotonic()
        if not the_plan.change_needed:
            say(progress, f"{the_plan.record} already points to {the_plan.new} (TTL {the_plan.ttl}); nothing to change")
            return DnsChange(plan=the_plan, change_id=None, status="unchanged", submitted_at=None, insync_at=None,
                             seconds=0.0, polls=0)
        say(progress, f"UPSERT {the_plan.record} {the_plan.type} {the_plan.old} -> {the_plan.new} (TTL {the_plan.ttl})")
        try:
            out = self.client.change_resource_record_sets(HostedZoneId=the_plan.zone_id,
                                                          ChangeBatch=the_plan.change_batch)
        except Exception as exc:  # noqa: BLE001 - botocore errors become one line
            raise OperationFailed(f"Route 53 rejected the change of {the_plan.record}: {redact(str(exc))}",
                                  hint="nothing was changed; fix the cause and repeat") from None
        change_id = out["ChangeInfo"]["Id"].split("/")[-1]
        submitted = now_iso()
        entry = {"at": submitted, "env": self.config.env_name, "provider": self.name, "change_id": change_id,
                 "record": the_plan.record, "type": the_plan.type, "old": the_plan.old, "new": the_plan.new,
                 "ttl": the_plan.ttl, "to": the_plan.to, "status": out["ChangeInfo"].get("Status")}
        record_change(self.config, entry)
        say(progress, f"change {change_id} submitted ({entry['status']})")
        timeout = timeout if timeout is not None else self.config.dns.sync_timeout
        state, polls = self.wait_insync(change_id, timeout=timeout, interval=interval, progress=progress, sleep=sleep)
        insync = now_iso()
        record_change(self.config, {**entry, "at": insync, "status": state, "polls": polls})
        seconds = round(time.monotonic() - started, 3)
        say(progress, f"change {change_id} INSYNC after {seconds:.1f}s ({polls} polls)")
        return DnsChange(plan=the_plan, change_id=change_id, status=state, submitted_at=submitted, insync_at=insync,
                         seconds=seconds, polls=polls)

    # ---- failover routing with health checks (ragops/dns/route53_failover.py) ----

    def setup_plan(self):
        from ragops.dns.route53_failover import setup_plan

        return setup_plan(self)

    def setup_apply(self, the_plan):
        from ragops.dns.route53_failover import setup_apply

        return setup_apply(self, the_plan)

    def health_status(self) -> list[dict]:
        from ragops.dns.route53_failover import health_status

        return health_status(self)
