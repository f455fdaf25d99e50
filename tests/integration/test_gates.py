"""Gates that cannot be fooled, against real components: Debian's Prometheus scraping real colors
behind real Traefik with the shipped analysis defaults (window 10s, scrape every 5s, a sample every
2s), a version that fails late, and a webhook that answers slowly."""
from __future__ import annotations

import httpx
import pytest
import yaml

from ragops.loadgen import LoadRunner
from ragops.monitoring import local as monitoring
from ragops.netutil import free_port
from tests.conftest import REPO, need
from tests.integration.conftest import running_stack
from tests.integration.test_delivery import webhook_receiver

pytestmark = pytest.mark.integration

FAULTY = ["--set", "RAG_FAULT_ERROR_RATE=0.3", "--set", "RAG_FAULT_AFTER_S=5"]
# no documents from 8 s after start-up: passes readiness and every smoke check (golden included) first
EMPTY_LATER = ["--set", "RAG_FAULT_RETRIEVAL=empty", "--set", "RAG_FAULT_AFTER_S=8"]
GOLDEN_QUERY = {"query": "canary weight of live traffic promoted or rolled back to the stable color", "top_k": 3}
EMPTY_SHARE = {"name": "empty_results", "success": "result <= 0.2",
               "query": 'sum(increase(rag_retrieval_queries_total{color="{{color}}",version="{{version}}",'
                        'outcome="empty"}[{{window}}])) / sum(increase(rag_retrieval_queries_total'
                        '{color="{{color}}",version="{{version}}"}[{{window}}]))'}


@pytest.fixture(scope="module")
def stack():
    need(monitoring.binary() is not None, "the prometheus binary (apt-get install prometheus)")
    prom = f"127.0.0.1:{free_port()}"
    # the shipped defaults of ragops.yaml: analysis window 10s every 2s, Prometheus scraping every 5s
    with running_stack("gates", analysis_window="10s", extra={
            "monitoring": {"prometheus": "local", "listen": prom},
            # k=1: on a corpus of 6 documents, 3 random answers would hold the right one 3 times in 7
            "smoke": {"golden": str(REPO / "service" / "golden.yaml"), "golden_k": 1},
            "deploy": {"analysis": {"provider": "prometheus", "interval": "2s"},
                       "canary": {"step_pause": "10s"}}}) as s:
        s.prometheus = prom
        yield s


def serving_version(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def set_env(stack, **sections) -> None:
    """Replace sections of the stack's environment (each CLI run reads the file)."""
    data = yaml.safe_load(stack.config_path.read_text())
    env = data["environments"]["test"]
    for key, value in sections.items():
        if key == "analysis":
            env["deploy"]["analysis"].update(value)
        else:
            env[key] = value
    stack.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def query_load(stack, seconds: float = 60) -> LoadRunner:
    """8 golden queries a second through the router (they find their document on a sound version)."""
    return LoadRunner(stack.router_url + "/api/v1/query", rps=8, seconds=seconds, method="POST",
                      json_body=GOLDEN_QUERY, headers={"X-API-Key": stack.api_key}, max_in_flight=16)


def test_a_version_that_fails_after_5s_is_rolled_back_by_prometheus_with_the_shipped_defaults(stack):
    # 8 requests a second, bounded; on the old queries the new process's 5xx series had one sample
    # in the 10 s range, `or vector(0)` made it 0 and the version passed (exit 0)
    # notifications: the rollback is its own critical event, the start names the live version
    set_env(stack, notify={"webhook": "${env:GATES_WEBHOOK}"})
    with webhook_receiver() as (url, received), \
            LoadRunner(stack.router_url + "/version", rps=8, seconds=60, max_in_flight=16) as load:
        proc = stack.cli("deploy", "--version", "v11", *FAULTY, "--yes", env={"GATES_WEBHOOK": url})
    set_env(stack, notify={})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "rolled back automatically" in proc.stderr and "error_rate" in proc.stderr
    assert "metrics of green: Prometheus scrapes green (v11)" in proc.stderr
    assert serving_version(stack) == "v1"
    assert load.requests > 0
    events = [(b["ragops"]["event"], b["ragops"]["from_version"]) for b in received]
    assert events == [("start", "v1"), ("rolled_back", "v1")], received


def test_a_version_answering_200_with_wrong_documents_is_refused_by_the_golden_queries(stack):
    proc = stack.cli("deploy", "--version", "v12", "--set", "RAG_FAULT_RETRIEVAL=shuffle", "--yes")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "golden queries: recall@1" in proc.stderr and "traffic stayed on blue" in proc.stderr
    assert serving_version(stack) == "v1"


def test_a_version_that_stops_finding_documents_is_rolled_back_by_promql(stack):
    set_env(stack, analysis={"metrics": [EMPTY_SHARE]})
    try:
        with query_load(stack) as load:
            proc = stack.cli("deploy", "--version", "v13", *EMPTY_LATER, "--yes")
    finally:
        set_env(stack, analysis={"metrics": []})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "rolled back automatically" in proc.stderr and "empty_results" in proc.stderr
    assert serving_version(stack) == "v1" and load.requests > 0


def test_a_version_that_stops_finding_documents_is_rolled_back_by_the_builtin_provider(stack):
    set_env(stack, analysis={"provider": "builtin", "max_empty_results_rate": 0.2})
    try:
        with query_load(stack) as load:
            proc = stack.cli("deploy", "--version", "v14", *EMPTY_LATER, "--yes")
    finally:
        set_env(stack, analysis={"provider": "prometheus", "max_empty_results_rate": None})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "rolled back automatically" in proc.stderr and "empty_results" in proc.stderr
    assert "(stable 0.0%)" in proc.stderr      # judged against the warm previous color's own share
    assert serving_version(stack) == "v1" and load.requests > 0


def test_a_deploy_refuses_when_prometheus_does_not_scrape_the_new_color(stack):
    import os
    import signal
    import time

    from ragops.config import load_config
    from ragops.platforms import get_platform

    config = load_config(stack.config_path, "test")
    pid = get_platform(config).proc("prometheus").pid()
    assert pid
    scrape_file = stack.state_dir / "prometheus" / "prometheus.yml"
    original = scrape_file.read_text()
    scrape = yaml.safe_load(original)
    colors = scrape["scrape_configs"][0]
    colors["static_configs"] = [c for c in colors["static_configs"] if c["labels"]["color"] != "green"]
    scrape_file.write_text(yaml.safe_dump(scrape, sort_keys=False))
    os.kill(pid, signal.SIGHUP)           # Prometheus reloads its configuration: green is no target any more
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            targets = httpx.get(f"http://{stack.prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if not any(t["labels"].get("color") == "green" for t in targets):
                break
            time.sleep(0.5)
        proc = stack.cli("deploy", "--version", "v15", "--yes")
    finally:
        scrape_file.write_text(original)
        os.kill(pid, signal.SIGHUP)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "has no sample of green (v15)" in proc.stderr and "not scraping that color's target" in proc.stderr
    assert "traffic stayed on blue" in proc.stderr and "switch router" not in proc.stderr
    assert serving_version(stack) == "v1"
