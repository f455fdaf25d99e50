"""Issue 24 on a real local stack (PostgreSQL primary + replica, Traefik, uvicorn colors): commands
that change the environment share one operations lock, concurrent rollbacks cannot undo each other,
a deploy started during a switchover waits for it, and `down` during a deploy refuses (exit 4)
unless --force, after which the deploy fails saying why. The tests run in this order on one stack."""
from __future__ import annotations

import json
import os
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

# the closing note's figure is 10 rounds (RAGOPS_ROLLBACK_ROUNDS=10); CI runs 1 (a deploy each, about 25 s) within its budget
ROUNDS = int(os.environ.get("RAGOPS_ROLLBACK_ROUNDS", "1"))


@pytest.fixture(scope="module")
def stack():
    from tests.integration.conftest import running_stack

    with running_stack("oplock", extra={"deploy": {"health_timeout": "20s"}}) as stack:
        yield stack


def serving(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def wait_for_phase(stack, phases: set[str], timeout: float = 60) -> str:
    journal = stack.state_dir / "deploy" / "current.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            phase = json.loads(journal.read_text() or "{}").get("phase")
        except (OSError, ValueError):
            phase = None
        if phase in phases:
            return phase
        time.sleep(0.05)
    raise AssertionError(f"the deploy never reached {phases}")


def test_three_concurrent_rollbacks_leave_the_warm_previous_version_live(stack):
    for round_ in range(ROUNDS):
        new = f"v{round_ + 2}0"
        deployed = stack.json("deploy", "--version", new, "--yes", timeout=180)
        assert deployed["result"] == "succeeded"
        previous = deployed["from_version"]
        assert serving(stack) == new
        procs = [stack.spawn("-o", "json", "rollback", "--yes") for _ in range(3)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
        outcomes = sorted(json.loads(out)["result"] for _, out, _ in results)
        assert outcomes == ["succeeded", "unchanged", "unchanged"], (round_, results)
        said = [json.loads(out)["reason"] for _, out, _ in results if json.loads(out)["result"] == "unchanged"]
        assert all(f"already rolled back to {previous}" in reason for reason in said), said
        assert serving(stack) == previous, f"round {round_}: the warm previous version is live"
    # a rollback after a rollback does nothing, also on its own
    again = stack.json("rollback", "--yes")
    assert again["result"] == "unchanged" and serving(stack) == previous


def test_a_deploy_started_during_a_switchover_waits_for_it(stack):
    switchover = stack.spawn("db", "switchover", "replica1", "--rejoin", "--yes")
    lock_file = stack.state_dir / "deploy" / "lock.json"
    deadline = time.monotonic() + 20
    while not lock_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    holder = json.loads(lock_file.read_text())
    assert holder["command"] == "ragops db switchover" and holder["brief"] is True
    time.sleep(0.3)
    deploy = stack.cli("deploy", "--version", "v90", "--yes", timeout=240)
    _, err = switchover.communicate(timeout=120)
    assert switchover.returncode == 0, err
    assert deploy.returncode == 0, deploy.stderr     # was exit 3: preflight during the switchover
    if "waiting" in deploy.stderr:   # under heavy load the deploy may start only after the switchover ended
        assert "ragops db switchover" in deploy.stderr
    assert serving(stack) == "v90"
    assert stack.json("db", "status")["primary"] == "replica1"


def test_after_a_switchover_a_drill_aims_at_the_primary_role(stack, tmp_path):
    """The node configured as `primary` is a replica now: the drill's SQL (DROP/CREATE DATABASE)
    and its restore go to the node that is primary now (they failed 'read-only transaction')."""
    assert stack.json("db", "status")["primary"] == "replica1"
    stack.cli("backup", "create", "--label", "drill", check=True, timeout=180)
    proc = stack.cli("-o", "json", "drill", "run", "backup-restore", "--report", str(tmp_path), "--yes", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads(proc.stdout)["verdict"] == "passed"


def test_down_during_a_deploy_refuses_then_force_fails_the_deploy(stack):
    # a canary step analysed for 30 s: the deploy is surely still running when down comes
    deploy = stack.spawn("deploy", "--version", "v91", "--strategy", "canary", "--steps", "50",
                         "--step-pause", "30s", "--yes")
    try:
        wait_for_phase(stack, {"canary-step"})
        time.sleep(1)
        refused = stack.cli("down")
        assert refused.returncode == 4, refused.stderr
        assert "operations lock is held by" in refused.stderr and "ragops deploy" in refused.stderr
        assert f"pid {deploy.pid}" in refused.stderr
        assert httpx.get(stack.router_url + "/version", timeout=5).status_code == 200, "nothing was stopped"
        forced = stack.cli("down", "--force")
        assert forced.returncode == 0, forced.stderr
        stopped = time.monotonic()
    finally:
        _, err = deploy.communicate(timeout=120)
    assert time.monotonic() - stopped < 10, "the deploy failed at its next analysis sample, not at the window's end"
    assert deploy.returncode == 1, err
    assert "changed under this deploy by" in err and "ragops down --force" in err
    history = stack.json("history")
    assert not any(r.get("id") and r.get("version") == "v91" and r.get("result") == "succeeded" for r in history)
