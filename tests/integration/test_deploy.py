"""Progressive delivery on the local platform: real Traefik, real uvicorn colors, real load."""
from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from ragops.loadgen import LoadRunner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_stack():
    """The shared local stack with a 12 s readiness timeout (instead of 30 s): the never-ready version
    waits it out in full, and a healthy color is ready in about 2 s."""

    from tests.integration.conftest import running_stack

    with running_stack("stack", extra={"deploy": {"health_timeout": "12s"}}) as stack:
        yield stack


def live(stack) -> dict:
    data = stack.json("status")
    return {c["color"]: c for c in data["colors"]}, data["router"]["weights"]


def serving_version(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def load(stack, rps: float = 150, seconds: float = 60) -> LoadRunner:
    return LoadRunner(stack.router_url + "/version", rps=rps, seconds=seconds, max_in_flight=64)


def kill_deploy_in_phase(stack, version: str, phase: str) -> None:
    """Start a deploy in a subprocess and kill -9 it once its journal reaches `phase`."""
    proc = stack.spawn("deploy", "--version", version, "--yes")
    journal = stack.state_dir / "deploy" / "current.json"
    deadline = time.monotonic() + 30
    reached = False
    while time.monotonic() < deadline and not reached:
        try:
            reached = json.loads(journal.read_text() or "{}").get("phase") == phase
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reached, f"the deploy never reached phase {phase!r}"


def test_plan_changes_nothing(local_stack):
    before = live(local_stack)
    out = local_stack.json("deploy", "--version", "v9", "--plan")
    assert out["result"] == "planned" and len(out["plan"]) >= 6
    assert any("switch the router" in line for line in out["plan"])
    assert live(local_stack)[1] == before[1]


def test_blue_green_under_load_has_no_failed_request(local_stack):
    colors, weights = live(local_stack)
    old = max(weights, key=weights.get)
    with load(local_stack) as stats:
        time.sleep(1)
        proc = local_stack.cli("deploy", "--version", "v2", "--yes")
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr
    assert stats.requests > 300
    assert stats.failed == 0, (stats.statuses, stats.errors)
    assert {"v1", "v2"} <= stats.versions_seen
    colors, weights = live(local_stack)
    new = next(c for c, w in weights.items() if w == 100)
    assert new != old and colors[new]["version"] == "v2"
    # the old color is drained: no traffic, nothing in flight, kept warm for rollback
    assert weights.get(old, 0) == 0
    metrics = httpx.get(colors[old]["url"] + "/metrics", timeout=5).text
    assert "rag_http_requests_in_flight 0.0" in metrics
    history = local_stack.json("history")
    assert history[-1]["result"] == "succeeded" and history[-1]["version"] == "v2"
    assert any(s.get("analysis") for s in history[-1]["steps"]), "analysis values are recorded"


def test_rollback_restores_previous_version_in_under_a_second(local_stack):
    assert serving_version(local_stack) == "v2"
    out = local_stack.json("rollback", "--yes")
    assert out["result"] == "succeeded" and out["version"] == "v1"
    assert out["switch_ms"] < 1000
    assert serving_version(local_stack) == "v1"


def test_failing_readiness_is_never_routed(local_stack):
    with load(local_stack, rps=50) as stats:
        proc = local_stack.cli("deploy", "--version", "v3-notready", "--set", "RAG_FAULT_READINESS_FAIL=1", "--yes")
    assert proc.returncode == 3, proc.stderr
    assert "never became ready" in proc.stderr
    assert "v3-notready" not in stats.versions_seen
    assert stats.failed == 0
    assert serving_version(local_stack) == "v1"


def test_slow_version_is_switched_back_automatically(local_stack):
    with load(local_stack, rps=40) as stats:
        proc = local_stack.cli("deploy", "--version", "v4-slow", "--set", "RAG_FAULT_LATENCY_MS=2500", "--yes")
    assert proc.returncode == 3, proc.stderr
    assert "rolled back automatically" in proc.stderr
    assert "p95_latency" in proc.stderr and "max_p95_latency_ms 2000ms" in proc.stderr
    assert serving_version(local_stack) == "v1"
    explain = local_stack.cli("status", "--explain", check=True).stdout
    assert "rolled_back" in explain and "p95_latency" in explain
    assert stats.failed == 0


def test_erroring_version_is_switched_back_automatically(local_stack):
    # passes its smoke test, then 30 % of its answers are 500s: the analysis must catch it
    with load(local_stack, rps=60) as stats:
        proc = local_stack.cli("deploy", "--version", "v5-errors", "--set", "RAG_FAULT_ERROR_RATE=0.3",
                               "--set", "RAG_FAULT_AFTER_S=3", "--yes")
    assert proc.returncode == 3, proc.stderr
    assert "error_rate" in proc.stderr and "max_error_rate 5.0%" in proc.stderr
    assert serving_version(local_stack) == "v1"
    # the breach was caught soon after the errors began: few users saw a 500, and the requests
    # sent after the switch back were all answered by v1
    assert stats.failed <= stats.requests * 0.15, stats.statuses
    last = [version for _sent, version, _status in sorted(stats.timeline)[-10:]]
    assert last == ["v1"] * 10, last


def test_canary_with_bad_version_aborts_at_first_step(local_stack):
    with load(local_stack, rps=60) as stats:
        proc = local_stack.cli("deploy", "--version", "v6-canary-bad", "--strategy", "canary", "--steps", "20,50,100",
                               "--step-pause", "6s", "--set", "RAG_FAULT_ERROR_RATE=0.5", "--set", "RAG_FAULT_AFTER_S=3",
                               "--yes")
    assert proc.returncode == 3, proc.stderr
    assert "aborted at 20%" in proc.stderr
    served_bad = stats.versions.get("v6-canary-bad", 0)
    # the canary saw about its step's share of the traffic while it was in, never more
    assert served_bad <= stats.requests * 0.2 + 20
    colors, weights = live(local_stack)
    assert weights == {"blue": 100} or weights == {"green": 100}
    assert serving_version(local_stack) == "v1"


def test_canary_pause_then_promote(local_stack):
    out = local_stack.json("deploy", "--version", "v7", "--strategy", "canary", "--steps", "20,50,100",
                           "--step-pause", "2s", "--pause-at", "20", "--yes")
    assert out["result"] == "paused"
    colors, weights = live(local_stack)
    assert sorted(weights.values()) == [20, 80]
    lock = local_stack.json("lock", "status")
    assert lock["held"] and lock["lock"]["paused"]
    # a new deploy is refused while the canary is paused
    second = local_stack.cli("deploy", "--version", "v8", "--yes")
    assert second.returncode == 4
    promoted = local_stack.json("promote", "--yes")
    assert promoted["result"] == "succeeded"
    assert serving_version(local_stack) == "v7"
    assert local_stack.json("lock", "status")["held"] is False


def test_second_deploy_at_once_exits_4_and_names_the_owner(local_stack):
    first = local_stack.spawn("deploy", "--version", "v10", "--yes")
    try:
        lock_file = local_stack.state_dir / "deploy" / "lock.json"
        deadline = time.monotonic() + 20
        while not lock_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock_file.exists()
        second = local_stack.cli("deploy", "--version", "v11", "--yes")
        assert second.returncode == 4
        assert "deploy lock is held by" in second.stderr and "ragops deploy" in second.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert serving_version(local_stack) == "v10"


def test_kill_9_mid_deploy_keeps_traffic_and_next_command_recovers(local_stack):
    before = serving_version(local_stack)
    with load(local_stack, rps=80, seconds=60) as stats:
        # kill it while it analyses the new color, right after the router switch
        kill_deploy_in_phase(local_stack, "v12", "analysis")
        time.sleep(1)
        status = local_stack.json("status")
        assert status["last_deploy"]["in_progress"] is True
        weights = status["router"]["weights"]
        served = {c["color"]: c for c in status["colors"]}
        assert all(served[c]["ready"] for c, w in weights.items() if w > 0), "traffic only on healthy colors"
        # a new deploy refuses and points at --resume / abort
        refused = local_stack.cli("deploy", "--version", "v13", "--yes")
        assert refused.returncode == 4 and "--resume" in refused.stderr
        resumed = local_stack.json("deploy", "--resume", "--yes")
        assert resumed["result"] == "succeeded"
    assert stats.failed == 0
    assert serving_version(local_stack) == "v12" != before
    assert local_stack.json("lock", "status")["held"] is False


def test_abort_after_kill_restores_the_live_color(local_stack):
    before = serving_version(local_stack)
    kill_deploy_in_phase(local_stack, "v14", "analysis")
    out = local_stack.json("abort", "--yes")
    assert out["result"] == "aborted"
    assert serving_version(local_stack) == before
    assert local_stack.json("lock", "status")["held"] is False


def test_lock_break_requires_yes_and_is_audited(local_stack):
    lock_file = local_stack.state_dir / "deploy" / "lock.json"
    lock_file.write_text(json.dumps({"token": "t", "owner": "someone@elsewhere", "host": "elsewhere", "pid": 1,
                                     "command": "ragops deploy", "expires_at": time.time() + 600}))
    refused = local_stack.cli("lock", "break")
    assert refused.returncode == 5
    blocked = local_stack.cli("deploy", "--version", "v15", "--yes")
    assert blocked.returncode == 4 and "someone@elsewhere" in blocked.stderr
    local_stack.cli("lock", "break", "--yes", check=True)
    assert not lock_file.exists()
    assert any(r.get("event") == "lock broken" for r in local_stack.json("history"))
