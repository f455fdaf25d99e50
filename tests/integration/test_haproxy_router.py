"""router.kind haproxy on the local platform: real haproxy (Debian 2.6), real uvicorn colors, real load.

In CI (RAGOPS_REQUIRE_INTEGRATION=1) a missing haproxy fails these tests; .ci/run installs it.
"""
from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import httpx
import pytest

from ragops.loadgen import LoadRunner
from tests.conftest import need
from tests.integration.conftest import running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def haproxy_stack():
    need(shutil.which("haproxy") is not None, "the haproxy binary (apt-get install haproxy)")
    with running_stack("haproxy", router_kind="haproxy") as stack:
        yield stack


def platform(stack):
    from ragops.config import load_config
    from ragops.platforms import get_platform

    return get_platform(load_config(stack.config_path, "test"))


def load(stack, rps: float = 150, seconds: float = 90) -> LoadRunner:
    return LoadRunner(stack.router_url + "/version", rps=rps, seconds=seconds, max_in_flight=64)


def serving_version(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def test_up_runs_haproxy_in_the_foreground_with_a_private_socket(haproxy_stack):
    status = haproxy_stack.json("status")
    assert status["router"]["running"] is True
    assert status["router"]["weights"] == {"blue": 100}
    assert serving_version(haproxy_stack) == "v1"
    router_dir = haproxy_stack.state_dir / "router"
    assert stat.S_IMODE(os.stat(router_dir / "haproxy.sock").st_mode) == 0o600
    pid = platform(haproxy_stack).proc("router").pid()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"-db" in cmdline and b"-W" in cmdline        # not daemonized: ragops tracks the master
    stats = httpx.get(f"http://{status_api(haproxy_stack)}/stats", timeout=5)
    assert stats.status_code == 200


def status_api(stack) -> str:
    return platform(stack).router_api


def worker_info(stack) -> dict[str, str]:
    """`show info` of the running haproxy worker (Pid, CurrConns, ...)."""
    from ragops.routing.haproxy import runtime

    text = runtime(platform(stack).router.socket_path, "show info")
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def test_blue_green_and_rollback_under_load_drop_nothing(haproxy_stack):
    worker = worker_info(haproxy_stack)["Pid"]
    with load(haproxy_stack) as stats:
        time.sleep(1)
        deploy = haproxy_stack.cli("deploy", "--version", "v2", "--yes")
        time.sleep(1)
        assert deploy.returncode == 0, deploy.stderr
        assert serving_version(haproxy_stack) == "v2"
        rollback = haproxy_stack.json("rollback", "--yes")
        time.sleep(1)
    assert rollback["result"] == "succeeded" and rollback["version"] == "v1"
    assert rollback["switch_ms"] < 1000
    assert stats.requests > 300
    assert stats.failed == 0, (stats.statuses, stats.errors)
    assert {"v1", "v2"} <= stats.versions_seen
    assert serving_version(haproxy_stack) == "v1"
    assert worker_info(haproxy_stack)["Pid"] == worker, "a deploy or rollback reloaded haproxy"


def test_maintenance_under_load_needs_no_reload_and_drops_nothing(haproxy_stack):
    local = platform(haproxy_stack)
    worker = worker_info(haproxy_stack)["Pid"]
    with load(haproxy_stack, seconds=8) as stats:
        time.sleep(1)
        for _ in range(3):
            local.set_maintenance(True)
            time.sleep(0.7)
            local.set_maintenance(False)
            time.sleep(0.7)
    assert worker_info(haproxy_stack)["Pid"] == worker, "maintenance reloaded haproxy"
    # every request got an answer: the service or the maintenance page (a 503 by design)
    assert stats.requests > 100 and not stats.errors, stats.errors   # > 100: a loaded CI machine
    assert set(stats.statuses) == {200, 503} and stats.statuses[503] > 10, stats.statuses
    assert httpx.get(haproxy_stack.router_url + "/version", timeout=5).status_code == 200


def test_reloads_under_load_reset_only_idle_keepalive_connections(haproxy_stack):
    """ragops reloads only when a color's address changes (never on local); when it does, HAProxy 2.6
    closes the old worker's idle keep-alive connections at once, and a client sending on one of them
    at that moment gets a reset. What must hold: new connections never fail, every answer is a 200,
    and the only failures are those resets, right at a reload, no more than the connections the old
    worker had open."""
    router = platform(haproxy_stack).router
    fresh = LoadRunner(haproxy_stack.router_url + "/version", rps=50, seconds=20, max_in_flight=32, keepalive=False)
    windows = []
    with load(haproxy_stack, rps=100, seconds=20) as kept, fresh as new:
        time.sleep(0.5)
        for _ in range(10):
            info = worker_info(haproxy_stack)
            start = time.time()
            router.reload(info["Pid"])
            windows.append((start - 0.5, time.time() + 0.5, int(info["CurrConns"])))
            time.sleep(1.0)
    assert new.requests > 50 and new.failed == 0, (new.statuses, new.errors)
    assert kept.requests > 100 and set(kept.statuses) == {200}, kept.statuses
    assert set(kept.errors) <= {"ReadError", "RemoteProtocolError"}, kept.errors
    failures = [sent for sent, _, status in kept.timeline if status == 0]
    for sent in failures:
        assert any(lo <= sent <= hi for lo, hi, _ in windows), f"a failure away from any reload at {sent}"
    for lo, hi, conns in windows:
        assert sum(lo <= sent <= hi for sent in failures) <= conns
    print(f"reloads: 10, keep-alive failures: {dict(kept.errors)} of {kept.requests}, new-connection: {new.failed} of {new.requests}")


def test_weights_survive_an_haproxy_restart(haproxy_stack):
    local = platform(haproxy_stack)
    colors = {c["color"]: c for c in haproxy_stack.json("status")["colors"]}
    serving = next(c for c, s in colors.items() if s.get("weight"))
    other = "green" if serving == "blue" else "blue"
    assert colors[other]["running"], "the previous color is kept warm"
    local.set_weights({serving: 30, other: 70})
    from ragops.supervisor import restoring

    with restoring(local):   # the stack's supervisor restarts a stopped router at once: this restart is the test's
        local.stop_router()
        assert not local.router_running()
        local.start_router()
    assert local.router.live_weights() == {serving: 30, other: 70}
    assert haproxy_stack.json("status")["router"]["weights"] == {serving: 30, other: 70}
    local.set_weights({serving: 100, other: 0})
    assert local.router.live_weights() == {serving: 100}


def test_maintenance_answers_503_with_a_page_and_keeps_weights(haproxy_stack):
    local = platform(haproxy_stack)
    before = local.router_weights()
    local.set_maintenance(True)
    try:
        resp = httpx.get(haproxy_stack.router_url + "/version", timeout=5)
        assert resp.status_code == 503
        assert "maintenance" in resp.text
        assert haproxy_stack.json("status")["router"]["maintenance"] is True
    finally:
        local.set_maintenance(False)
    assert httpx.get(haproxy_stack.router_url + "/version", timeout=5).status_code == 200
    assert local.router_weights() == before


def test_every_check_failing_fails_open_to_the_live_color(haproxy_stack):
    """Issue 24 point 10: with the database gone every color's /readyz answers 503; the unchecked
    backup twins keep the live color serving (its /version works without a database)."""
    from ragops.config import load_config
    from ragops.pg import pgctl

    config = load_config(haproxy_stack.config_path, "test")
    primary = next(n["name"] for n in haproxy_stack.json("db", "status")["nodes"] if n["role"] == "primary")
    node = pgctl.managed_node(config, primary)
    live = next(c for c in haproxy_stack.json("status")["colors"] if c.get("weight"))
    node.kill9()
    try:
        assert pgctl.wait_until(lambda: httpx.get(live["url"] + "/readyz", timeout=5).status_code == 503, 15)
        time.sleep(3.5)   # fall 2 at inter 1s: every checked server is down
        state = __import__("ragops.routing.haproxy", fromlist=["runtime"]).runtime(
            platform(haproxy_stack).router.socket_path, "show servers state rag")
        answers = [httpx.get(haproxy_stack.router_url + "/version", timeout=10) for _ in range(20)]
        assert [r.status_code for r in answers] == [200] * 20, state
        assert {r.headers.get("x-rag-color") for r in answers} == {live["color"]}
    finally:
        node.start()
