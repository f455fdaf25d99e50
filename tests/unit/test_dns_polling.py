"""Route 53 polling without AWS: a fake client that stays PENDING a few times (moto is INSYNC at once)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ragops.config import load_config
from ragops.dns import route53
from ragops.dns.registry import get_provider
from ragops.dns.route53 import Route53
from ragops.errors import OperationFailed

REPO = Path(__file__).resolve().parents[2]


class FakeRoute53:
    def __init__(self, pending: int, value: str = "lb-primary.example.com."):
        self.pending = pending
        self.value = value
        self.get_calls = 0
        self.batches = []

    def list_hosted_zones_by_name(self, DNSName, MaxItems):
        return {"HostedZones": [{"Id": "/hostedzone/Z123", "Name": "example.com."}]}

    def list_resource_record_sets(self, HostedZoneId, StartRecordName, StartRecordType, MaxItems):
        return {"ResourceRecordSets": [{"Name": "api.example.com.", "Type": "CNAME", "TTL": 60,
                                        "ResourceRecords": [{"Value": self.value}]}]}

    def change_resource_record_sets(self, HostedZoneId, ChangeBatch):
        self.batches.append(ChangeBatch)
        return {"ChangeInfo": {"Id": "/change/C42", "Status": "PENDING"}}

    def get_change(self, Id):
        self.get_calls += 1
        return {"ChangeInfo": {"Id": Id, "Status": "PENDING" if self.get_calls <= self.pending else "INSYNC"}}


@pytest.fixture
def config(tmp_path):
    doc = {"project": "dnstest", "default_env": "prod",
           "environments": {"prod": {"platform": "local", "state_dir": str(tmp_path / "state"),
                                     "dns": {"zone": "example.com.", "record": "api.example.com.",
                                             "primary": "lb-primary.example.com.",
                                             "secondary": "lb-secondary.example.com.", "ttl": 60,
                                             "sync_timeout": 10}}}}
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path)


def test_polls_until_insync_every_interval(config):
    fake = FakeRoute53(pending=3)
    sleeps: list[float] = []
    events: list[str] = []
    provider = get_provider(config, client=fake)
    assert isinstance(provider, Route53)
    plan = provider.plan("secondary")
    assert (plan.old, plan.new, plan.ttl, plan.change_needed) == ("lb-primary.example.com.", "lb-secondary.example.com.", 60, True)
    change = provider.apply(plan, interval=1.5, sleep=sleeps.append, progress=events.append)
    assert change.status == "INSYNC" and change.change_id == "C42" and change.polls == 4
    assert sleeps == [1.5, 1.5, 1.5]
    assert len(fake.batches) == 1 and fake.batches[0]["Changes"][0]["Action"] == "UPSERT"
    assert any("PENDING" in e for e in events)
    journal = [json.loads(line) for line in (config.state_dir / "dns-changes.jsonl").read_text().splitlines()]
    assert [e["status"] for e in journal] == ["PENDING", "INSYNC"] and journal[-1]["change_id"] == "C42"


def test_times_out_with_a_hint(config):
    fake = FakeRoute53(pending=10_000)
    clock = iter(range(0, 1000, 2))  # every clock read advances 2 s
    with pytest.raises(OperationFailed, match="still PENDING after 5s") as err:
        Route53(config, fake).wait_insync("C42", timeout=5, interval=2, sleep=lambda s: None,
                                         clock=lambda: next(clock))
    assert "dns status" in err.value.hint


def test_no_change_when_already_there(config):
    fake = FakeRoute53(pending=0, value="lb-secondary.example.com.")
    provider = Route53(config, fake)
    change = provider.apply(provider.plan("secondary"))
    assert change.status == "unchanged" and fake.batches == []


def test_template_has_the_change_batch_shape():
    template = json.loads((REPO / "templates" / "route53-failover.json").read_text())
    built = route53.change_batch("api.example.com", "CNAME", "lb-us-west-2.example.com.", 60, "x")
    assert template.keys() == built.keys()
    assert template["Changes"][0].keys() == built["Changes"][0].keys()
    assert template["Changes"][0]["ResourceRecordSet"].keys() == built["Changes"][0]["ResourceRecordSet"].keys()
    assert built["Changes"][0]["ResourceRecordSet"]["Name"] == "api.example.com."


def test_unconfigured_dns_names_the_key(tmp_path):
    from ragops.errors import ConfigError

    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "x", "default_env": "a", "environments": {"a": {}}}))
    with pytest.raises(ConfigError, match=r"environments\.a\.dns\.record"):
        Route53(load_config(path), FakeRoute53(0)).plan()


def test_dns_history_is_redacted_and_read_back_through_the_provider(config):
    from ragops.secrets import register_secret

    register_secret("s3cr3t-comment-value")
    fake = FakeRoute53(pending=0)
    provider = get_provider(config, client=fake)
    the_plan = provider.plan("secondary")
    the_plan.record = "api.example.com. s3cr3t-comment-value"   # a secret that reached a record field
    provider.apply(the_plan, sleep=lambda s: None)
    text = (config.state_dir / "dns-changes.jsonl").read_text()
    assert "s3cr3t-comment-value" not in text and "***" in text
    rows = provider.history(10)
    assert [r["status"] for r in rows] == ["PENDING", "INSYNC"] and rows[-1]["provider"] == "route53"


def test_unknown_dns_provider_names_the_key(config, monkeypatch):
    from ragops.errors import ConfigError

    monkeypatch.setattr(config.dns, "provider", "cloudflare", raising=False)
    with pytest.raises(ConfigError, match=r"dns.provider: unknown provider 'cloudflare'"):
        get_provider(config)


def test_failover_goes_through_the_interface(config):
    from ragops.dns.registry import failover

    fake = FakeRoute53(pending=1)
    change = failover(config, "secondary", client=fake, interval=0)
    assert change.status == "INSYNC" and len(fake.batches) == 1
    assert failover(config, "primary", dry_run=True, client=fake).new == "lb-primary.example.com."
