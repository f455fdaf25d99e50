"""DNS failover against the moto server (a separate process over HTTP)."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

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
