"""Gates that cannot be fooled, against real components: Debian's Prometheus scraping real colors
behind real Traefik with the shipped analysis defaults (window 10s, scrape every 5s, a sample every
2s), a version that fails late, and a webhook that answers slowly."""
from __future__ import annotations

import httpx
import pytest

from ragops.loadgen import LoadRunner
from ragops.monitoring import local as monitoring
from ragops.netutil import free_port
from tests.conftest import need
from tests.integration.conftest import running_stack

pytestmark = pytest.mark.integration

FAULTY = ["--set", "RAG_FAULT_ERROR_RATE=0.3", "--set", "RAG_FAULT_AFTER_S=5"]


@pytest.fixture(scope="module")
def stack():
    need(monitoring.binary() is not None, "the prometheus binary (apt-get install prometheus)")
    prom = f"127.0.0.1:{free_port()}"
    # the shipped defaults of ragops.yaml: analysis window 10s every 2s, Prometheus scraping every 5s
    with running_stack("gates", analysis_window="10s", extra={
            "monitoring": {"prometheus": "local", "listen": prom},
            "deploy": {"analysis": {"provider": "prometheus", "interval": "2s"},
                       "canary": {"step_pause": "10s"}}}) as s:
        s.prometheus = prom
        yield s


def serving_version(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def test_a_version_that_fails_after_5s_is_rolled_back_by_prometheus_with_the_shipped_defaults(stack):
    # 8 requests a second, bounded; on the old queries the new process's 5xx series had one sample
    # in the 10 s range, `or vector(0)` made it 0 and the version passed (exit 0)
    with LoadRunner(stack.router_url + "/version", rps=8, seconds=60, max_in_flight=16) as load:
        proc = stack.cli("deploy", "--version", "v11", *FAULTY, "--yes")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "rolled back automatically" in proc.stderr and "error_rate" in proc.stderr
    assert "metrics of green: Prometheus scrapes green (v11)" in proc.stderr
    assert serving_version(stack) == "v1"
    assert load.requests > 0
