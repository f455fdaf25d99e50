"""DNS failover against the moto server (a separate process over HTTP)."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import boto3
import pytest
import yaml

from ragops.cli.main import main

pytestmark = pytest.mark.integration


@pytest.fixture
def dns_config(tmp_path, moto_server, aws_env):
    r53 = boto3.client("route53", endpoint_url=moto_server, region_name="us-east-1")
    zone = r53.create_hosted_zone(Name="example.com.", CallerReference=str(tmp_path))["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "api.example.com.", "Type": "CNAME", "TTL": 300,
                              "ResourceRecords": [{"Value": "lb-us-east-1.example.com."}]}}]})
    doc = {"project": "dnstest", "default_env": "prod",
           "environments": {"prod": {"platform": "local", "state_dir": str(tmp_path / "state"),
                                     "dns": {"zone_id": zone.split("/")[-1], "record": "api.example.com.",
                                             "type": "CNAME", "primary": "lb-us-east-1.example.com.",
                                             "secondary": "lb-us-west-2.example.com.", "ttl": 60,
                                             "endpoint_url": moto_server, "sync_timeout": 20}}}}
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc))
    yield path, r53, zone
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "DELETE",
        "ResourceRecordSet": r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName="api.example.com.",
                                                           StartRecordType="CNAME", MaxItems="1")["ResourceRecordSets"][0]}]})
    r53.delete_hosted_zone(Id=zone)


def run(*args) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(list(args))
    return code, buf.getvalue()


def record(r53, zone):
    rr = r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName="api.example.com.",
                                       StartRecordType="CNAME", MaxItems="1")["ResourceRecordSets"][0]
    return rr["ResourceRecords"][0]["Value"], rr["TTL"]


def test_failover_reaches_insync_and_failback(dns_config):
    path, r53, zone = dns_config
    code, out = run("--config", str(path), "dns", "status", "--output", "json")
    assert code == 0 and json.loads(out)["points_to"] == "primary"

    code, out = run("--config", str(path), "dns", "failover", "--plan", "--output", "json")
    plan = json.loads(out)
    assert code == 0 and plan["old"] == "lb-us-east-1.example.com." and plan["new"] == "lb-us-west-2.example.com."
    assert record(r53, zone)[0] == "lb-us-east-1.example.com."   # a plan changes nothing

    code, out = run("--config", str(path), "dns", "failover")   # no terminal, no --yes
    assert code == 5 and record(r53, zone)[0] == "lb-us-east-1.example.com."

    code, out = run("--config", str(path), "dns", "failover", "--yes", "--output", "json")
    change = json.loads(out)
    assert code == 0 and change["status"] == "INSYNC" and change["change_id"]
    assert record(r53, zone) == ("lb-us-west-2.example.com.", 60)
    assert r53.get_change(Id=change["change_id"])["ChangeInfo"]["Status"] == "INSYNC"

    code, out = run("--config", str(path), "dns", "history", "--output", "json")
    assert change["change_id"] in {e["change_id"] for e in json.loads(out)}

    code, out = run("--config", str(path), "--yes", "dns", "failback", "-o", "json")
    assert code == 0 and json.loads(out)["status"] == "INSYNC"
    assert record(r53, zone)[0] == "lb-us-east-1.example.com."
    code, out = run("--config", str(path), "dns", "failback", "-o", "json")
    assert code == 0 and json.loads(out)["change_needed"] is False


# ---- health-checked failover records (`ragops dns setup`) ------------------------------------------

def _cleanup_zone(r53, zone, check_ids):
    for rr in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]:
        if rr["Type"] not in ("NS", "SOA"):
            r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "DELETE",
                                                                                          "ResourceRecordSet": rr}]})
    r53.delete_hosted_zone(Id=zone)
    for check_id in check_ids:
        r53.delete_health_check(HealthCheckId=check_id)


@pytest.fixture
def failover_config(tmp_path, moto_server, aws_env):
    """A zone with the plain record `dns failover` manages today, and dns.health_checks on; each test
    uses its own host names, so health checks of other tests on the shared moto server never match."""
    r53 = boto3.client("route53", endpoint_url=moto_server, region_name="us-east-1")
    tag = tmp_path.name.replace("_", "-").lower()[-30:].strip("-")
    primary, secondary = f"east-{tag}.example.com.", f"west-{tag}.example.com."
    zone = r53.create_hosted_zone(Name="example.com.", CallerReference=str(tmp_path))["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "api.example.com.", "Type": "CNAME", "TTL": 300,
                              "ResourceRecords": [{"Value": primary}]}}]})
    dns = {"zone_id": zone.split("/")[-1], "record": "api.example.com.", "type": "CNAME", "primary": primary,
           "secondary": secondary, "ttl": 60, "endpoint_url": moto_server, "sync_timeout": 20,
           "health_checks": {"enabled": True, "path": "/healthz", "interval": 10, "failure_threshold": 2}}
    doc = {"project": "dnstest", "default_env": "prod",
           "environments": {"prod": {"platform": "local", "state_dir": str(tmp_path / "state"), "dns": dns}}}
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc))
    before = {c["Id"] for c in r53.list_health_checks()["HealthChecks"]}
    yield path, r53, zone, doc, (primary, secondary)
    after = {c["Id"] for c in r53.list_health_checks()["HealthChecks"]}
    _cleanup_zone(r53, zone, after - before)


def pair(r53, zone):
    rrs = r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName="api.example.com.",
                                        StartRecordType="CNAME")["ResourceRecordSets"]
    return [r for r in rrs if r["Name"] == "api.example.com." and r["Type"] == "CNAME"]


def test_setup_creates_checks_and_pair_then_changes_nothing(failover_config):
    path, r53, zone, doc, (primary, secondary) = failover_config
    checks_before = len(r53.list_health_checks()["HealthChecks"])
    code, out = run("--config", str(path), "dns", "setup", "--plan", "--output", "json")
    plan = json.loads(out)
    assert code == 0 and plan["change_needed"] and not plan["applied"]
    assert [c["action"] for c in plan["checks"]] == ["create", "create"]
    assert plan["replaces_simple"] == primary
    assert len(r53.list_health_checks()["HealthChecks"]) == checks_before   # a plan creates nothing
    code, _ = run("--config", str(path), "dns", "setup")                   # no terminal, no --yes
    assert code == 5 and len(pair(r53, zone)) == 1

    code, out = run("--config", str(path), "dns", "setup", "--yes", "--output", "json")
    done = json.loads(out)
    assert code == 0 and done["applied"] and done["change_id"]
    checks = {c["Id"]: c["HealthCheckConfig"] for c in r53.list_health_checks()["HealthChecks"]}
    assert len(checks) == checks_before + 2
    records = {r["Failover"]: r for r in pair(r53, zone)}
    assert set(records) == {"PRIMARY", "SECONDARY"} and all(r.get("SetIdentifier") for r in records.values())
    assert records["PRIMARY"]["ResourceRecords"][0]["Value"] == primary
    assert records["SECONDARY"]["ResourceRecords"][0]["Value"] == secondary
    east = checks[records["PRIMARY"]["HealthCheckId"]]
    assert east["FullyQualifiedDomainName"] == primary.rstrip(".") and east["ResourcePath"] == "/healthz"
    assert east["Type"] == "HTTPS" and east["Port"] == 443 and east["FailureThreshold"] == 2
    assert checks[records["SECONDARY"]["HealthCheckId"]]["FullyQualifiedDomainName"] == secondary.rstrip(".")

    code, out = run("--config", str(path), "dns", "setup", "--yes", "--output", "json")
    again = json.loads(out)
    assert code == 0 and again["change_needed"] is False and again["change_id"] is None
    assert [c["action"] for c in again["checks"]] == ["keep", "keep"]
    assert len(r53.list_health_checks()["HealthChecks"]) == checks_before + 2

    doc["environments"]["prod"]["dns"]["health_checks"]["path"] = "/readyz"   # a changed setting: updated in place
    path.write_text(yaml.safe_dump(doc))
    code, out = run("--config", str(path), "dns", "setup", "--yes", "--output", "json")
    assert code == 0 and [c["action"] for c in json.loads(out)["checks"]] == ["update", "update"]
    checks = {c["Id"]: c["HealthCheckConfig"] for c in r53.list_health_checks()["HealthChecks"]}
    assert len(checks) == checks_before + 2 and checks[records["PRIMARY"]["HealthCheckId"]]["ResourcePath"] == "/readyz"
    assert json.loads(run("--config", str(path), "dns", "setup", "--plan", "-o", "json")[1])["change_needed"] is False

    code, out = run("--config", str(path), "dns", "status", "--output", "json")
    state = json.loads(out)
    assert code == 0 and state["points_to"] == "primary" and state["value"] == primary
    rows = {r["role"]: r for r in state["failover_records"]}
    assert rows["primary"]["health_check"] == records["PRIMARY"]["HealthCheckId"]
    assert rows["secondary"]["health_check"] == records["SECONDARY"]["HealthCheckId"]
    assert all(r["status"] == "healthy" and r["observations"] >= 1 for r in rows.values())  # moto's canned report
    code, out = run("--config", str(path), "dns", "status")
    assert code == 0 and "PRIMARY" in out and "SECONDARY" in out and "healthy" in out


def test_failover_with_the_pair_swaps_primary_and_keeps_health_checks(failover_config):
    path, r53, zone, _, (primary, secondary) = failover_config
    assert run("--config", str(path), "--yes", "dns", "setup")[0] == 0
    ids = {r["ResourceRecords"][0]["Value"]: r["HealthCheckId"] for r in pair(r53, zone)}

    code, out = run("--config", str(path), "--yes", "dns", "failover", "--output", "json")
    change = json.loads(out)
    assert code == 0 and change["status"] == "INSYNC"
    records = {r["Failover"]: r for r in pair(r53, zone)}
    assert len(pair(r53, zone)) == 2
    assert records["PRIMARY"]["ResourceRecords"][0]["Value"] == secondary
    assert records["SECONDARY"]["ResourceRecords"][0]["Value"] == primary
    assert records["PRIMARY"]["HealthCheckId"] == ids[secondary]           # each value keeps its own check
    assert json.loads(run("--config", str(path), "dns", "status", "-o", "json")[1])["points_to"] == "secondary"
    # setup after a failover keeps the swapped pair: nothing to change
    assert json.loads(run("--config", str(path), "dns", "setup", "--plan", "-o", "json")[1])["change_needed"] is False

    code, out = run("--config", str(path), "--yes", "dns", "failback", "-o", "json")
    assert code == 0 and {r["Failover"]: r["ResourceRecords"][0]["Value"] for r in pair(r53, zone)} == \
        {"PRIMARY": primary, "SECONDARY": secondary}
    assert json.loads(run("--config", str(path), "dns", "failback", "-o", "json")[1])["change_needed"] is False


@pytest.mark.parametrize("where, value, key", [
    ("dns", "lb east!.example.com.", "dns.secondary"),
    ("regions", "not_a_host", "regions.secondary.dns_value"),
])
def test_bad_endpoint_is_one_config_line_before_any_call(failover_config, where, value, key):
    path, r53, zone, doc, _ = failover_config
    env = doc["environments"]["prod"]
    if where == "dns":
        env["dns"]["secondary"] = value
    else:
        env["regions"] = {"secondary": {"database_node": "replica1", "dns_value": value}}
    path.write_text(yaml.safe_dump(doc))
    checks_before = len(r53.list_health_checks()["HealthChecks"])
    err = io.StringIO()
    with redirect_stderr(err):
        code, out = run("--config", str(path), "--yes", "dns", "setup")
    message = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2 and f"environments.prod.{key}" in message[0] and "Traceback" not in err.getvalue()
    assert len(r53.list_health_checks()["HealthChecks"]) == checks_before and len(pair(r53, zone)) == 1
