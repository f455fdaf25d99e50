"""Issue 24, points 6 and 10 on a real local stack (Traefik, two colors' worth of ports, PostgreSQL
primary + replica): what the logs and the state directory give away, /metrics through the public
router, and a router that keeps serving the live color when every health check fails: under 200
concurrent queries, during `db switchover`, and with the database gone."""
from __future__ import annotations

import stat
import time

import httpx
import pytest

from ragops.loadgen import LoadRunner
from tests.integration.conftest import running_stack


@pytest.fixture(scope="module")
def stack():
    with running_stack("failopen") as running:
        yield running


def _mode(path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_credentials_in_a_url_never_reach_a_log_and_the_state_is_private(stack):
    key = stack.api_key
    refused = httpx.post(f"{stack.router_url}/api/v1/query?api_key={key}&token=t0ps3cret&x=1",
                         json={"query": "q"}, timeout=10)
    assert refused.status_code == 401
    time.sleep(1.5)   # Traefik and uvicorn write their access lines asynchronously
    logs = stack.state_dir / "logs"
    texts = {p.name: p.read_text(errors="replace") for p in logs.iterdir() if p.is_file()}
    for name, text in texts.items():
        assert key not in text and "t0ps3cret" not in text, name
    assert any("api_key=***" in t and "token=***" in t and "x=1" in t for t in texts.values()), sorted(texts)
    assert "/api/v1/query HTTP" in texts["router-access.log"]      # the path stays, the query is dropped
    # created by ragops (or by what it started, in its folders): readable by this account only
    assert _mode(stack.state_dir) == 0o700 and _mode(logs) == 0o700
    for path in [*logs.iterdir(), *(stack.state_dir / "run").glob("*.pid")]:
        assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"


def test_metrics_through_the_public_router_needs_the_key(stack):
    assert httpx.get(f"{stack.router_url}/metrics", timeout=10).status_code == 401
    keyed = httpx.get(f"{stack.router_url}/metrics", headers={"X-API-Key": stack.api_key}, timeout=10)
    assert keyed.status_code == 200 and "rag_http_requests_total" in keyed.text
    colors = stack.json("status")["colors"]
    live = next(c for c in colors if c.get("weight"))
    direct = httpx.get(live["url"].rstrip("/") + "/metrics", timeout=10)   # Prometheus and the analysis read here
    assert direct.status_code == 200


def test_200_concurrent_queries_do_not_take_the_only_color_out(stack):
    """The router's readiness probe used to queue behind the queries (1 s timeout): the only color
    was ejected and everybody got 503 for seconds."""
    headers = {"X-API-Key": stack.api_key}
    load = LoadRunner(f"{stack.router_url}/api/v1/query", rps=100, seconds=8, method="POST",
                      json_body={"query": "what cools the reactor core?"}, headers=headers, max_in_flight=200,
                      timeout=30)
    other = LoadRunner(f"{stack.router_url}/version", rps=10, seconds=8, timeout=30)
    with load, other:
        time.sleep(8.2)   # both run their 8 s; leaving the block waits for the answers in flight
    print(f"\n200 in flight: queries {load.stats.to_dict()}\nother client: {other.stats.to_dict()}")
    assert other.stats.requests >= 70 and other.stats.statuses.get(503, 0) == 0, other.stats.to_dict()
    assert load.stats.statuses.get(503, 0) == 0, load.stats.to_dict()


def test_db_switchover_under_20_rps(stack):
    headers = {"X-API-Key": stack.api_key}
    started = time.monotonic()
    with LoadRunner(f"{stack.router_url}/api/v1/query", rps=20, seconds=120, method="POST",
                    json_body={"query": "what cools the reactor core?"}, headers=headers, timeout=30,
                    max_in_flight=400) as stats:
        time.sleep(2)
        switched = stack.cli("--yes", "db", "switchover", "replica1", "--rejoin", timeout=120)
        took = time.monotonic() - started
        time.sleep(3)    # and a little while on the new primary
    print(f"\nswitchover ({took:.1f}s) under 20 rps: {stats.to_dict()}")
    assert switched.returncode == 0, switched.stderr
    assert stats.requests >= 20 * (took + 3) * 0.7, stats.to_dict()   # sent at 20 rps throughout
    assert stats.statuses.get(503, 0) == 0 and stats.failed == 0, stats.to_dict()


def test_router_fails_open_when_every_readiness_check_fails(stack):
    """With the database gone every color's /readyz answers 503: the router keeps sending requests to
    the live color (which still answers /version) instead of answering 503 itself."""
    from ragops.config import load_config
    from ragops.pg import pgctl

    config = load_config(stack.config_path)
    primary = next(n["name"] for n in stack.json("db", "status")["nodes"] if n["role"] == "primary")
    node = pgctl.managed_node(config, primary)
    node.kill9()
    try:
        colors = stack.json("status")["colors"]
        live = next(c for c in colors if c.get("weight"))
        assert pgctl.wait_until(lambda: httpx.get(live["url"] + "/readyz", timeout=5).status_code == 503, 15)
        time.sleep(4)   # several failed health checks (interval 1 s): every color is out of the rotation
        answers = [httpx.get(f"{stack.router_url}/version", timeout=10) for _ in range(20)]
        assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers if r.status_code != 200]
        assert {r.headers.get("x-rag-color") for r in answers} == {live["color"]}
    finally:
        node.start()
