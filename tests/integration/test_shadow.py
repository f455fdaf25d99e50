"""Shadow deploys against real components: real Traefik mirroring a share of live traffic to a real
shadow color (uvicorn) while clients keep getting the live color's answers."""
from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ragops.loadgen import LoadRunner, LoadStats
from tests.conftest import server_tmpdir
from tests.integration.conftest import Stack, _start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack():
    directory = server_tmpdir("shadow")
    # no synthetic probes from the analysis: every request the shadow color counts was mirrored to it
    s = _start_stack(directory, extra={"deploy": {"analysis": {"probe_rps": 0, "min_requests": 5},
                                                  "keep_previous": 1}})
    data = yaml.safe_load(s.config_path.read_text())
    s.service_port = data["environments"]["test"]["service"]["port"]   # type: ignore[attr-defined]
    yield s
    s.cli("down", "--purge", "--yes", timeout=120)
    shutil.rmtree(directory, ignore_errors=True)


def color_url(stack, color: str) -> str:
    return f"http://127.0.0.1:{stack.service_port + (0 if color == 'blue' else 1)}"


def live(stack) -> tuple[str, str]:
    """(color, version) that answers through the router."""
    resp = httpx.get(stack.router_url + "/version", timeout=5)
    return resp.headers["x-rag-color"], resp.headers["x-rag-version"]


def mirror_served(stack) -> bool:
    """Whether Traefik (asked through its API) serves the shadow mirror router right now."""
    data = yaml.safe_load(stack.config_path.read_text())
    api = data["environments"]["test"]["router"]["api"]
    return httpx.get(f"http://{api}/api/http/routers/rag-mirror@file", timeout=5).status_code == 200


def counts(url: str) -> dict[str, float] | None:
    """The color's own request counters: GET /version and every POST."""
    try:
        text = httpx.get(url + "/metrics", timeout=1).text
    except httpx.HTTPError:
        return None
    out = {"get": 0.0, "post": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "rag_http_requests_total":
                if s.labels.get("method") == "GET" and s.labels.get("route") == "/version":
                    out["get"] += s.value
                elif s.labels.get("method") == "POST":
                    out["post"] += s.value
    return out


@dataclass
class ShadowRun:
    returncode: int
    stdout: str
    stderr: str
    mirrored: dict[str, float]     # what the shadow color counted from the mirror's confirmation on


def shadow(stack, version: str, *extra: str, duration: str = "3s") -> ShadowRun:
    """Run a shadow deploy; while it runs, read the shadow color's own counters: at the moment the
    router confirmed the mirror (after the smoke suite's own requests) and at their highest after."""
    url = color_url(stack, "green" if live(stack)[0] == "blue" else "blue")
    proc = stack.spawn("--output", "json", "deploy", "--version", version, "--strategy", "shadow",
                       "--duration", duration, "--yes", *extra)
    at_mirror: dict[str, float] = {}
    peak = {"get": 0.0, "post": 0.0}
    lines: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if not at_mirror and line.startswith("deploy: ok mirror ") and "router confirmed" in line:
                at_mirror.update(counts(url) or {})

    def poll() -> None:
        while proc.poll() is None:
            now = counts(url)
            if now and at_mirror:
                for key in peak:
                    peak[key] = max(peak[key], now[key])
            time.sleep(0.2)

    threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=poll, daemon=True)]
    for thread in threads:
        thread.start()
    stdout = proc.stdout.read()
    proc.wait(timeout=300)
    for thread in threads:
        thread.join(timeout=10)
    mirrored = {key: peak[key] - at_mirror.get(key, 0.0) for key in peak} if at_mirror else {}
    return ShadowRun(proc.returncode, stdout, "".join(lines), mirrored)


@contextmanager
def client_load(stack: Stack) -> Iterator[tuple[LoadStats, LoadStats]]:
    """Bounded loopback load through the router: ~45 GET/s and ~5 read-only POST/s (a query)."""
    gets = LoadRunner(stack.router_url + "/version", rps=45, seconds=120, max_in_flight=16)
    posts = LoadRunner(stack.router_url + "/api/v1/query", rps=5, seconds=120, method="POST",
                       json_body={"query": "shadow", "top_k": 1}, headers={"X-API-Key": stack.api_key},
                       max_in_flight=4)
    with gets as g, posts as p:
        yield g, p


def test_shadow_plan_names_the_mirror_and_changes_nothing(stack):
    plan = stack.json("deploy", "--version", "v2", "--strategy", "shadow", "--duration", "2m",
                      "--mirror-percent", "20", "--plan")
    assert plan["strategy"] == "shadow" and plan["result"] == "planned"
    assert any(line.startswith(f"mirror 20% of read requests (GET/HEAD) from {plan['from_color']} to "
                               f"{plan['to_color']}") for line in plan["plan"]), plan["plan"]
    assert not mirror_served(stack) and plan["from_version"] == live(stack)[1]


def test_shadow_deploy_mirrors_reads_and_changes_nothing_clients_see(stack):
    live_color, live_version = live(stack)
    shadow_color = "green" if live_color == "blue" else "blue"
    with client_load(stack) as (gets, posts):
        proc = shadow(stack, "v2-shadow", "--mirror-percent", "50")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["strategy"] == "shadow" and result["result"] == "succeeded"
    # clients: nothing failed, every answer from the live version
    assert gets.requests > 100 and posts.requests > 10
    assert gets.failed == 0 and posts.failed == 0, (gets.to_dict(), posts.to_dict())
    assert gets.versions_seen == {live_version} and posts.versions_seen == {live_version}
    assert set(posts.statuses) == {200}
    # the shadow color got a copy of the reads, none of the writes
    assert proc.mirrored["get"] >= 20, proc.mirrored
    assert proc.mirrored["post"] == 0, proc.mirrored
    # stopped after, the live color untouched; the history has the measured values
    assert counts(color_url(stack, shadow_color)) is None
    assert live(stack) == (live_color, live_version)
    record = stack.json("history", "-n", "1")[-1]
    assert record["strategy"] == "shadow" and record["result"] == "succeeded"
    analysed = record["shadow"]["analysis"]
    assert analysed["passed"] and analysed["requests"] >= 5
    assert record["shadow"]["mirror_percent"] == 50 and record["shadow"]["mirror_writes"] is False
    status = stack.cli("lock", "status", check=True).stdout
    assert "free" in status


def test_mirror_writes_mirrors_posts_too_then_blue_green_deploys_it(stack):
    live_color, live_version = live(stack)
    with client_load(stack) as (gets, posts):
        proc = shadow(stack, "v3-writes", "--mirror-writes", "--then", "blue-green")
    assert proc.returncode == 0, proc.stderr
    assert gets.failed == 0 and posts.failed == 0
    assert proc.mirrored["post"] >= 5 and proc.mirrored["get"] >= 20, proc.mirrored
    # clients got the live version until the switch, then the new one
    assert live(stack) == ("green" if live_color == "blue" else "blue", "v3-writes")
    record = stack.json("history", "-n", "1")[-1]
    assert record["strategy"] == "shadow" and record["result"] == "succeeded"
    assert record["from_version"] == live_version and record["shadow"]["mirror_writes"] is True
    assert not mirror_served(stack)


def test_bad_shadow_version_is_reported_failed_and_live_is_untouched(stack):
    live_color, live_version = live(stack)
    with client_load(stack) as (gets, _):
        proc = shadow(stack, "v2-bad", "--set", "RAG_FAULT_ERROR_RATE=0.6", "--set", "RAG_FAULT_AFTER_S=2",
                      duration="8s")
    assert proc.returncode == 3, proc.stderr
    assert "shadow v2-bad failed its analysis" in proc.stderr and "error_rate" in proc.stderr
    assert gets.failed == 0 and gets.versions_seen == {live_version}
    assert live(stack) == (live_color, live_version)
    shadow_color = "green" if live_color == "blue" else "blue"
    assert counts(color_url(stack, shadow_color)) is None
    record = stack.json("history", "-n", "1")[-1]
    assert record["result"] == "failed" and record["shadow"]["analysis"]["error_rate"] > 0.05


@pytest.mark.parametrize("then", ["abort", "resume"])
def test_an_interrupted_shadow_deploy_ends_with_the_mirror_off_and_the_shadow_stopped(stack, then):
    live_color, live_version = live(stack)
    shadow_color = "green" if live_color == "blue" else "blue"
    # killed (SIGKILL) while the mirror is on: during the analysis, or with the verdict journaled
    point = "phase:shadow-analysis" if then == "abort" else "phase:mirror-off"
    with client_load(stack):
        killed = stack.cli("deploy", "--version", f"v4-{then}", "--strategy", "shadow", "--duration", "2s",
                           "--yes", env={"RAGOPS_TEST_STOP_AT": point})
    assert killed.returncode == -9, killed.stderr
    assert mirror_served(stack)
    assert live(stack) == (live_color, live_version)
    if then == "abort":
        done = stack.cli("abort", "--yes", check=True)
        assert "mirror removed" in done.stderr, done.stderr
        expected = "aborted"
    else:
        done = stack.cli("deploy", "--resume", "--yes", check=True)
        assert f"mirror to {shadow_color} removed" in done.stderr, done.stderr
        expected = "succeeded"
    assert not mirror_served(stack)
    assert counts(color_url(stack, shadow_color)) is None
    assert live(stack) == (live_color, live_version)
    assert stack.json("history", "-n", "1")[-1]["result"] == expected
