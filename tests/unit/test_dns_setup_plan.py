"""`ragops dns setup`'s plan without AWS: a read-only fake Route 53 (any write call fails the test)."""
from __future__ import annotations

import pytest
import yaml

from ragops.config import load_config
from ragops.dns.registry import get_provider
from ragops.errors import ConfigError

EAST, WEST = "lb-east.example.com.", "lb-west.example.com."


class ReadOnlyRoute53:
    def __init__(self, checks=(), rrsets=()):
        self.checks = list(checks)
        self.rrsets = list(rrsets)
        self.reads = 0

    def list_hosted_zones_by_name(self, DNSName, MaxItems):
        self.reads += 1
        return {"HostedZones": [{"Id": "/hostedzone/Z1", "Name": "example.com."}]}

    def list_health_checks(self, **kw):
        self.reads += 1
        return {"HealthChecks": self.checks, "IsTruncated": False}

    def list_resource_record_sets(self, HostedZoneId, StartRecordName, StartRecordType, MaxItems):
        self.reads += 1
        return {"ResourceRecordSets": self.rrsets}


def make(tmp_path, health_checks=True, **dns):
    base = {"zone": "example.com.", "record": "api.example.com.", "primary": EAST, "secondary": WEST,
            "ttl": 60, "health_checks": health_checks}
    doc = {"project": "t", "default_env": "prod",
           "environments": {"prod": {"platform": "local", "state_dir": str(tmp_path / "s"), "dns": {**base, **dns}}}}
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path)


def check(check_id, host, **over):
    cfg = {"Type": "HTTPS", "FullyQualifiedDomainName": host, "Port": 443, "ResourcePath": "/healthz",
           "RequestInterval": 30, "FailureThreshold": 3, **over}
    return {"Id": check_id, "HealthCheckConfig": cfg}


def failover_rr(role, value, check_id):
    return {"Name": "api.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": f"prod-{role}",
            "Failover": role.upper(), "HealthCheckId": check_id, "ResourceRecords": [{"Value": value}]}


def test_first_plan_creates_two_checks_and_the_pair_replacing_the_plain_record(tmp_path):
    config = make(tmp_path)                 # `health_checks: true` shorthand, path from service.health_path
    plain = {"Name": "api.example.com.", "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": EAST}]}
    plan = get_provider(config, ReadOnlyRoute53(rrsets=[plain])).setup_plan()
    assert plan.change_needed and plan.replaces_simple == EAST
    assert [(c.role, c.action, c.endpoint) for c in plan.checks] == [
        ("primary", "create", "lb-east.example.com"), ("secondary", "create", "lb-west.example.com")]
    assert plan.checks[0].config == {"Type": "HTTPS", "Port": 443, "ResourcePath": config.service.health_path,
                                     "RequestInterval": 30, "FailureThreshold": 3,
                                     "FullyQualifiedDomainName": "lb-east.example.com"}
    assert [(r.role, r.action, r.value, r.set_identifier) for r in plan.records] == [
        ("primary", "create", EAST, "prod-primary"), ("secondary", "create", WEST, "prod-secondary")]


def test_everything_in_place_plans_nothing(tmp_path):
    config = make(tmp_path)
    fake = ReadOnlyRoute53(checks=[check("h1", "lb-east.example.com"), check("h2", "lb-west.example.com")],
                           rrsets=[failover_rr("primary", EAST, "h1"), failover_rr("secondary", WEST, "h2")])
    plan = get_provider(config, fake).setup_plan()
    assert not plan.change_needed and plan.replaces_simple is None
    assert [c.action for c in plan.checks] == ["keep", "keep"] and [r.action for r in plan.records] == ["keep", "keep"]
    assert plan.notes == []


def test_an_interval_route53_cannot_change_is_a_note_not_a_change(tmp_path):
    config = make(tmp_path, health_checks={"enabled": True, "interval": 10})
    fake = ReadOnlyRoute53(checks=[check("h1", "lb-east.example.com"), check("h2", "lb-west.example.com")],
                           rrsets=[failover_rr("primary", EAST, "h1"), failover_rr("secondary", WEST, "h2")])
    plan = get_provider(config, fake).setup_plan()
    assert not plan.change_needed and len(plan.notes) == 2 and "cannot change the interval" in plan.notes[0]


def test_changed_settings_update_the_check_and_a_wrong_ttl_the_record(tmp_path):
    config = make(tmp_path, health_checks={"enabled": True, "failure_threshold": 5}, ttl=30)
    fake = ReadOnlyRoute53(checks=[check("h1", "lb-east.example.com"), check("h2", "lb-west.example.com")],
                           rrsets=[failover_rr("primary", EAST, "h1"), failover_rr("secondary", WEST, "h2")])
    plan = get_provider(config, fake).setup_plan()
    assert [(c.action, c.id) for c in plan.checks] == [("update", "h1"), ("update", "h2")]
    assert [r.action for r in plan.records] == ["update", "update"]


def test_http_on_an_ip_endpoint(tmp_path):
    config = make(tmp_path, type="A", primary="192.0.2.10", secondary="198.51.100.20",
                  health_checks={"enabled": True, "protocol": "HTTP", "path": "/ready"})
    plan = get_provider(config, ReadOnlyRoute53()).setup_plan()
    assert plan.checks[0].config["IPAddress"] == "192.0.2.10" and plan.checks[0].config["Port"] == 80
    assert plan.checks[1].config["ResourcePath"] == "/ready"


@pytest.mark.parametrize("dns, message", [
    ({"secondary": "lb west.example.com."}, "environments.prod.dns.secondary: 'lb west.example.com'"),
    ({"secondary": EAST}, "environments.prod.dns.secondary: same endpoint"),
    ({"health_checks": False}, "environments.prod.dns.health_checks: not enabled"),
])
def test_bad_settings_fail_before_any_call(tmp_path, dns, message):
    fake = ReadOnlyRoute53()
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        get_provider(make(tmp_path, **dns), fake).setup_plan()
    assert fake.reads == 0


def test_a_relative_path_is_refused_on_load(tmp_path):
    with pytest.raises(ConfigError, match=r"health_checks\.path"):
        make(tmp_path, health_checks={"enabled": True, "path": "healthz"})


def test_another_routing_policy_is_refused(tmp_path):
    weighted = {"Name": "api.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": "blue", "Weight": 10,
                "ResourceRecords": [{"Value": EAST}]}
    with pytest.raises(ConfigError, match="another routing policy"):
        get_provider(make(tmp_path), ReadOnlyRoute53(rrsets=[weighted])).setup_plan()
