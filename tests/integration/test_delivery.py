"""Progressive delivery against real components: a local Prometheus (Debian's binary) scraping real
colors behind real Traefik, PromQL analysis with inconclusive pauses and baseline comparison."""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from ragops.loadgen import LoadRunner
from ragops.monitoring import local as monitoring
from ragops.netutil import free_port
from tests.conftest import need
from tests.integration.conftest import running_stack

pytestmark = pytest.mark.integration

ERRORS = ('(sum(increase(rag_http_requests_total{color="{{color}}",status=~"5..",route!~"/metrics|/healthz|/readyz"}'
          '[{{window}}])) or vector(0)) / sum(increase(rag_http_requests_total{color="{{color}}",route!~"/metrics|/healthz|/readyz"}'
          '[{{window}}]))')


@pytest.fixture(scope="module")
def stack():
    need(monitoring.binary() is not None, "the prometheus binary (apt-get install prometheus)")
    prom = f"127.0.0.1:{free_port()}"
    with running_stack("delivery", analysis_window="4s", extra={
            "monitoring": {"prometheus": "local", "listen": prom, "scrape_interval": "1s"},
            "deploy": {"analysis": {"provider": "prometheus", "interval": "1s"}}}) as s:
        s.prometheus = prom
        yield s


def set_analysis(stack, notify: dict | None = None, deploy: dict | None = None, **analysis) -> None:
    """Change deploy.analysis (and notify, deploy) of the stack's environment (each CLI run reads the file)."""
    data = yaml.safe_load(stack.config_path.read_text())
    env = data["environments"]["test"]
    env["deploy"]["analysis"].update(analysis)
    env["deploy"].update(deploy or {})
    env["notify"] = notify or {}
    stack.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


@contextmanager
def webhook_receiver():
    """A local Slack-style webhook: collects the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def serving_version(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def versions(stack, n: int, headers: dict | None = None) -> set[str]:
    """The versions that answered n requests, each from a new client (no cookie kept)."""
    return {httpx.get(stack.router_url + "/version", headers=headers, timeout=5).json()["version"]
            for _ in range(n)}


def load(stack, rps: float = 20, seconds: float = 60) -> LoadRunner:
    return LoadRunner(stack.router_url + "/version", rps=rps, seconds=seconds, max_in_flight=32)


def scraped(stack) -> dict:
    """job, color -> the `up` value, once Prometheus has scraped every target (polled, up to 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        body = httpx.get(f"http://{stack.prometheus}/api/v1/query", params={"query": "up"}, timeout=5).json()
        up = {(r["metric"]["job"], r["metric"].get("color")): r["value"][1] for r in body["data"]["result"]}
        if len(up) == 3 or time.monotonic() > deadline:
            return up
        time.sleep(0.2)


def test_up_runs_a_prometheus_that_scrapes_the_colors_and_the_router(stack):
    up = scraped(stack)
    assert up[("rag-colors", "blue")] == "1" and up[("router", None)] == "1"
    assert ("rag-colors", "green") in up     # scraped (down until a deploy starts it)
    status = stack.cli("status", check=True).stdout
    assert "v1" in status


def test_bad_version_fails_a_promql_metric_and_is_rolled_back(stack):
    # the guide's two metrics, as PromQL; notifications to a local webhook
    set_analysis(stack, metrics=[], notify={"webhook": "${env:DELIVERY_WEBHOOK}"})
    with webhook_receiver() as (url, received), load(stack) as stats:
        proc = stack.cli("deploy", "--version", "v2-errors", "--set", "RAG_FAULT_ERROR_RATE=0.5",
                         "--set", "RAG_FAULT_AFTER_S=2", "--yes", env={"DELIVERY_WEBHOOK": url})
    assert proc.returncode == 3, proc.stderr
    events = [body["ragops"]["event"] for body in received]
    assert events == ["start", "rolled_back"], received
    last = received[-1]
    assert last["ragops"]["kind"] == "deploy" and last["ragops"]["version"] == "v2-errors"
    assert last["text"].startswith("[critical] deploy rolled back") and last["attachments"][0]["fields"]
    assert "rolled back automatically" in proc.stderr
    assert "error_rate" in proc.stderr and "breaks result <= 0.05" in proc.stderr
    assert serving_version(stack) == "v1"
    assert stats.requests > 0


def test_a_metric_without_data_pauses_the_canary_header_and_sticky_routing(stack):
    # a dead webhook too (nothing listens on its port): reported, counted, the outcome unchanged
    set_analysis(stack, metrics=[{"name": "ghost", "success": "result <= 1",
                                  "query": 'sum(rate(no_such_metric{color="{{color}}"}[{{window}}]))'}],
                 notify={"webhook": "${env:DELIVERY_WEBHOOK}", "timeout": 1}, deploy={"sticky": True})
    dead = {"DELIVERY_WEBHOOK": f"http://127.0.0.1:{free_port()}/hook"}
    try:
        proc = stack.cli("deploy", "--version", "v3-nodata", "--strategy", "canary", "--steps", "50,100",
                         "--step-pause", "3s", "--yes", env=dead)
        assert proc.returncode == 3, proc.stderr
        assert "paused at 50%" in proc.stderr and "inconclusive: ghost" in proc.stderr
        # sent in the background; the command names what was not delivered (in its error line too)
        assert "not notified: deploy.start (notify: ConnectError), deploy.paused (notify: ConnectError)" in proc.stderr
        assert dead["DELIVERY_WEBHOOK"] not in proc.stderr + proc.stdout       # the URL is a secret
        assert json.loads((stack.state_dir / "notify.json").read_text())["failed"] == 2    # start, paused
        status = stack.json("status")
        assert sorted(status["router"]["weights"].values()) == [50, 50]     # the canary stays at its weight
        # routing for people: the header picks a side whatever the weights
        assert versions(stack, 20, {"X-Canary": "always"}) == {"v3-nodata"}
        assert versions(stack, 20, {"X-Canary": "never"}) == {"v1"}
        # sticky: each client keeps the version it first got over 50 requests; new clients split
        for _ in range(4):
            with httpx.Client(base_url=stack.router_url, timeout=5) as client:
                mine = {client.get("/version").json()["version"] for _ in range(50)}
            assert len(mine) == 1, mine
        assert versions(stack, 40) == {"v1", "v3-nodata"}
    finally:
        set_analysis(stack, metrics=[], deploy={"sticky": False})
        stack.cli("abort", "--yes", check=True)
    assert serving_version(stack) == "v1"


def test_baseline_passes_a_canary_as_bad_as_stable_and_fails_a_worse_one(stack):
    flaky = ["--set", "RAG_FAULT_ERROR_RATE=0.3", "--set", "RAG_FAULT_AFTER_S=2"]
    # 8 s at 50 %: the versions answer well for their first 2 s (so that smoke passes), and the 4 s
    # windows after that must see only the faulty phase; at 4 s a 0.9-error canary was diluted to the
    # stable's 0.43 and passed (seen in CI)
    canary = ["--strategy", "canary", "--steps", "50,100", "--step-pause", "8s", "--yes"]
    vs_stable = {"name": "errors_vs_stable", "query": ERRORS, "compare": "baseline"}
    with load(stack, rps=30, seconds=120):
        # a stable version that already errors (admitted with a generous allowance)
        # (blue-green: baseline metrics are skipped without a stable color taking traffic)
        # 0.3 vs 0.3 differs by chance by ~0.1 (one standard deviation at ~60 requests a color per
        # window); 0.9 vs 0.3 differs by 0.6: an allowance of 0.3 separates the two at ~3 deviations
        set_analysis(stack, metrics=[{**vs_stable, "max_difference": 0.3}])
        stack.cli("deploy", "--version", "v4-flaky", *flaky, "--yes", check=True)
        same = stack.cli("deploy", "--version", "v5-flaky", *flaky, *canary)
        worse = stack.cli("deploy", "--version", "v6-worse", "--set", "RAG_FAULT_ERROR_RATE=0.9",
                          "--set", "RAG_FAULT_AFTER_S=2", *canary)
    assert same.returncode == 0, same.stderr
    assert worse.returncode == 3, worse.stderr
    assert "aborted at 50%" in worse.stderr and "vs stable" in worse.stderr
    explain = stack.cli("status", "--explain", check=True).stdout
    assert "metric errors_vs_stable:" in explain and "(stable " in explain and "{" not in explain
    live = [c for c in stack.json("status")["colors"] if c.get("weight")]
    assert [c["version"] for c in live] == ["v5-flaky"], live
