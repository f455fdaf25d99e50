"""The whole region failover on the local platform: primary killed, `ragops failover --yes`, the
service writes to the new primary through the secondary region's router, DNS (moto) moved."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest
import yaml

from ragops.netutil import free_port
from tests.integration.conftest import _pair_port, _start_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def region_stack(moto_server, aws_env):
    # not pytest's tmp_path: a concurrent pytest session resets /tmp/pytest-of-root to 0700 and the
    # PostgreSQL server account could no longer reach its data directory
    tmp_path = Path(tempfile.mkdtemp(prefix="ragops-failovertest-"))
    tmp_path.chmod(0o755)
    r53 = boto3.client("route53", endpoint_url=moto_server, region_name="us-east-1")
    zone = r53.create_hosted_zone(Name="failover.test.", CallerReference=str(tmp_path))["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "api.failover.test.", "Type": "CNAME", "TTL": 60,
                              "ResourceRecords": [{"Value": "lb-east.failover.test."}]}}]})
    extra = {"regions": {"primary": {"database_node": "primary", "dns_value": "lb-east.failover.test."},
                         "secondary": {"database_node": "replica1", "router": f"127.0.0.1:{free_port()}",
                                       "router_api": f"127.0.0.1:{free_port()}", "service_port": _pair_port(),
                                       "dns_value": "lb-west.failover.test."}},
             "dns": {"zone_id": zone.split("/")[-1], "record": "api.failover.test.", "type": "CNAME",
                     "primary": "lb-east.failover.test.", "secondary": "lb-west.failover.test.", "ttl": 60,
                     "endpoint_url": moto_server, "sync_timeout": "20s"},
             "slo": {"rto_seconds": 60, "rpo_seconds": 5}}
    stack = _start_stack(tmp_path, extra=extra)
    try:
        yield stack, r53, zone
    finally:
        stack.cli("down", "--purge", "--yes", timeout=180)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_region_failover_end_to_end(region_stack):
    stack, r53, zone = region_stack
    from ragops.config import load_config
    from ragops.pg import pgctl

    config = load_config(stack.config_path)
    headers = {"X-API-Key": stack.api_key}
    with httpx.Client(base_url=stack.router_url, timeout=10) as client:
        r = client.post("/api/v1/documents", headers=headers, json={"title": "before failover", "content": "written before"})
        assert r.status_code in (200, 201), r.text
        before_id = r.json()["id"]
    time.sleep(0.5)
    primary = pgctl.managed_node(config, "primary")
    primary.kill9()
    assert pgctl.wait_until(lambda: not primary.running(), 10)

    report = stack.json("--yes", "failover", "--failure-time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        timeout=300)
    assert report["passed"] and report["new_primary"] == "replica1" and report["to_region"] == "secondary"
    names = [s["name"] for s in report["steps"]]
    assert names == ["fence old primary", "promote replica", "DNS to the target region",
                     "start the service in the target region", "smoke test"]
    assert all(s["ok"] for s in report["steps"])
    assert report["rto_seconds"] is not None and report["rto_seconds"] < 60
    assert report["rpo_bytes"] is not None and report["rpo_source"].startswith("dead primary")
    assert report["smoke"]["passed"]

    # the record holds the secondary value
    rr = r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName="api.failover.test.",
                                       StartRecordType="CNAME", MaxItems="1")["ResourceRecordSets"][0]
    assert rr["ResourceRecords"][0]["Value"] == "lb-west.failover.test."

    # the service writes to the new primary through the secondary region's router
    secondary_router = "http://" + yaml.safe_load(stack.config_path.read_text())["environments"]["test"]["regions"]["secondary"]["router"]
    with httpx.Client(base_url=secondary_router, timeout=10) as client:
        r = client.post("/api/v1/documents", headers=headers, json={"title": "after failover", "content": "written after"})
        assert r.status_code in (200, 201), r.text
        after_id = r.json()["id"]
    password = (stack.state_dir / "secrets" / "db-password").read_text().strip()
    replica_port = config.database.replicas[0].port
    with psycopg.connect(f"host=127.0.0.1 port={replica_port} user=postgres password={password} dbname=rag",
                         autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM documents WHERE id = ANY(%s::uuid[])",
                                               ([before_id, after_id],))}
    assert ids == {str(before_id), str(after_id)}

    status = stack.json("db", "status")
    assert status["primary"] == "replica1"
