"""Crash safety: ragops killed (SIGKILL) or interrupted (Ctrl-C, SIGINT) at every named point of
blue-green, canary and rollback, under loopback load, then resumed or aborted.

The process is stopped by the engine's test hook (RAGOPS_TEST_STOP_AT, ragops/deploy/states.py), not
by timing. Right after a Ctrl-C: exit 130, a line naming the phase and the next command, the lock
released, and `status` telling the same. After the continuation: no failed request, the router serves
exactly what `status` says, no lock left, and no process of the stack that ragops does not track.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import yaml

from ragops.deploy.states import BLUE_GREEN_POINTS, CANARY_POINTS, ROLLBACK_POINTS
from ragops.loadgen import LoadRunner
from tests.integration.conftest import running_stack

pytestmark = pytest.mark.integration

RPS = 80
STOPPED = {"KILL": -9, "INT": 130}     # kill -9, and Ctrl-C (exit 130)
_versions = itertools.count(2)


@pytest.fixture(scope="module")
def stack():
    """One stack for the whole file; short analysis windows and step pauses keep each deploy short."""
    with running_stack("crash", analysis_window="1s",
                       extra={"deploy": {"canary": {"steps": [50, 100], "step_pause": "1s"},
                                         "analysis": {"min_requests": 3}, "drain_timeout": "5s"}}) as s:
        s.started = time.monotonic()
        yield s
        print(f"\ncrash-safety module: {time.monotonic() - s.started:.1f}s on one shared stack")


def status(stack) -> dict:
    """What `ragops --output json status` prints, computed by the same engine in this process: a CLI
    start-up costs 1-5 s on the shared CI machine and these checks run ~150 times. The CLI's own
    status output is checked by the paused-canary and supervisor tests."""
    from ragops.config import load_config
    from ragops.output import to_jsonable
    from ragops.status import status as environment_status

    return json.loads(json.dumps(to_jsonable(environment_status(load_config(stack.config_path))), default=str))


def served(stack) -> str:
    return httpx.get(stack.router_url + "/version", timeout=5).json()["version"]


def expected_version(data: dict) -> str:
    """What `status` says the router serves: the version of the color with all the traffic."""
    live = [c for c in data["colors"] if c["weight"] == 100]
    assert len(live) == 1, data["router"]["weights"]
    return live[0]["version"]


def _stack_processes(stack) -> set[int]:
    """Every process that belongs to this stack's colors (by its port or its database URL)."""
    config = yaml.safe_load(stack.config_path.read_text())["environments"]["test"]
    ports = {f"--port {config['service']['port']}", f"--port {config['service']['port'] + 1}"}
    db = f"port={config['database']['primary']['port']},"     # the service's conninfo lists every node
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "ragservice" not in cmd:
                continue
            env = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(p in cmd for p in ports) or db in env:
            found.add(int(entry.name))
    return found


def _tracked(stack) -> set[int]:
    pids = set()
    for path in (stack.state_dir / "run").glob("*.pid"):
        try:
            pids.add(int(json.loads(path.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            pass
    return pids


def check_consistent(stack, stats=None) -> dict:
    data = status(stack)
    version = expected_version(data)
    assert {served(stack) for _ in range(5)} == {version}, "the router serves what status says"
    assert data["lock"] is None, f"stuck lock: {data['lock']}"
    assert data["deploy"] is None, f"unfinished deploy: {data['deploy']}"
    orphans = _stack_processes(stack) - _tracked(stack)
    assert not orphans, f"processes ragops does not track: {orphans}"
    if stats is not None:
        assert stats.failed == 0, (stats.statuses, dict(stats.errors))
    return data


def killed_run(stack, args: list[str], point: str, sig: str = "KILL"):
    env = {"RAGOPS_TEST_STOP_AT": point, "RAGOPS_TEST_STOP_SIGNAL": sig}
    proc = stack.cli(*args, "--yes", env=env, timeout=120)
    assert proc.returncode == STOPPED[sig], f"{point}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    if sig == "INT":
        after_ctrl_c(stack, proc, point)
    return proc


def after_ctrl_c(stack, proc, point: str) -> None:
    """Right after Ctrl-C: a line saying where it stopped and what to run next, the lock released,
    `status` saying the same, and the router serving only colors that `status` gives traffic."""
    data = status(stack)
    assert data["lock"] is None, f"{point}: Ctrl-C left the lock: {data['lock']}"
    if point == "lock-taken":      # stopped before the journal existed: nothing to resume or undo
        assert data["deploy"] is None, data["deploy"]
        assert "before the deploy was journaled: nothing was changed" in proc.stderr, proc.stderr[-2000:]
    else:
        deploy = data["deploy"]
        assert deploy is not None and not deploy["stale_lock"] and not deploy["lock_held"], deploy
        line = f"interrupted (Ctrl-C) at phase {deploy['phase']}"
        assert line in proc.stderr, f"{point}: no {line!r} in\n{proc.stderr[-2000:]}"
        kind = "rollback" if "rollback" in proc.args else "deploy"
        assert f"ragops {kind} --resume" in proc.stderr and "ragops abort" in proc.stderr, proc.stderr[-2000:]
        assert f"ragops {kind} --resume" in deploy["hint"], deploy["hint"]
    routed = {c["version"] for c in data["colors"] if c["weight"] > 0}
    assert {served(stack) for _ in range(6)} <= routed, f"{point}: the router serves what status says"


def continuation(stack, how: str, redo: list[str], resume: list[str]):
    """resume: finish it (a deploy stopped before its journal existed is simply run again); abort: undo
    (refused with exit 2 when a Ctrl-C left nothing at all to undo)."""
    unfinished = (stack.state_dir / "deploy" / "current.json").exists()
    lock = (stack.state_dir / "deploy" / "lock.json").exists()
    args = ["abort"] if how == "abort" else (resume if unfinished else redo)
    proc = stack.cli(*args, "--yes", timeout=180)
    if how == "abort" and not unfinished and not lock:
        assert proc.returncode == 2 and "nothing to abort" in proc.stderr, proc.stderr[-2000:]
        return proc
    assert proc.returncode == 0, f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def load(stack) -> LoadRunner:
    return LoadRunner(stack.router_url + "/version", rps=RPS, seconds=120, max_in_flight=32)


@pytest.mark.parametrize("point", BLUE_GREEN_POINTS)
def test_blue_green_killed_at_every_point_then_aborted(stack, point):
    before = served(stack)
    version = f"v{next(_versions)}"
    deploy = ["deploy", "--version", version, "--strategy", "blue-green"]
    with load(stack) as stats:
        killed_run(stack, deploy, point)
        continuation(stack, "abort", deploy, ["deploy", "--resume"])
    check_consistent(stack, stats)
    assert served(stack) == before


@pytest.mark.parametrize("point", CANARY_POINTS)
def test_canary_killed_at_every_point_then_aborted(stack, point):
    before = served(stack)
    version = f"v{next(_versions)}"
    deploy = ["deploy", "--version", version, "--strategy", "canary"]
    with load(stack) as stats:
        killed_run(stack, deploy, point)
        continuation(stack, "abort", deploy, ["deploy", "--resume"])
    check_consistent(stack, stats)
    assert served(stack) == before


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_rollback_killed_at_every_point_then_aborted(stack, point):
    data = status(stack)
    live = expected_version(data)
    warm = [c for c in data["colors"] if c["weight"] == 0 and c["running"]]
    if not warm:   # an aborted deploy stopped the new color: make a warm one with a quick deploy
        stack.cli("deploy", "--version", f"v{next(_versions)}", "--yes", check=True, timeout=180)
        data = status(stack)
        live = expected_version(data)
        warm = [c for c in data["colors"] if c["weight"] == 0 and c["running"]]
    target = warm[0]["version"]
    rollback = ["rollback", "--to", target]
    with load(stack) as stats:
        killed_run(stack, rollback, point)
        continuation(stack, "abort", rollback, ["rollback", "--resume"])
    data = check_consistent(stack, stats)
    assert served(stack) == live
    running = {c["version"] for c in data["colors"] if c["running"]}
    assert running == {target, live}, "the abort kept both versions warm"


def history(stack) -> list[dict]:
    """`ragops history --output json`, read in this process (see status())."""
    from ragops.config import load_config
    from ragops.deploy.engine import history as deploy_history

    return deploy_history(load_config(stack.config_path))


def _warm_version(stack) -> str:
    return next(c["version"] for c in status(stack)["colors"] if c["weight"] == 0 and c["running"])


def _unfinished(stack) -> bool:
    return (stack.state_dir / "deploy" / "current.json").exists()


FLOWS = {"blue-green": (BLUE_GREEN_POINTS, ["deploy", "--resume"]),
         "canary": (CANARY_POINTS, ["deploy", "--resume"]),
         "rollback": (ROLLBACK_POINTS, ["rollback", "--resume"])}


# After a Ctrl-C the journal is what kill -9 at the same point leaves (checked right after each Ctrl-C by
# after_ctrl_c), minus the lock: abort's only Ctrl-C-specific path is the missing lock, the same at every
# point. So: the point with no journal (abort refuses: nothing to undo) and, in each flow, a router
# change cut short (intent journaled, weights written, result not), the state abort must settle.
CTRL_C_ABORT = [("blue-green", "lock-taken"), ("blue-green", "after:weights"), ("canary", "after:weights#2"),
                ("rollback", "after:weights")]


@pytest.mark.parametrize(("flow", "point"), CTRL_C_ABORT)
def test_ctrl_c_then_abort(stack, flow, point):
    if flow == "rollback":
        if not any(c["weight"] == 0 and c["running"] for c in status(stack)["colors"]):
            stack.cli("deploy", "--version", f"v{next(_versions)}", "--yes", check=True, timeout=180)
        args = ["rollback", "--to", _warm_version(stack)]
    else:
        args = ["deploy", "--version", f"v{next(_versions)}", "--strategy", flow]
    before = served(stack)
    with load(stack) as stats:
        killed_run(stack, args, point, "INT")
        continuation(stack, "abort", [], [])
    check_consistent(stack, stats)
    assert served(stack) == before


def _journal_version(stack) -> str:
    return json.loads((stack.state_dir / "deploy" / "current.json").read_text())["version"]


def _resumed_to_the_end(stack, version: str, flow: str) -> None:
    data = check_consistent(stack)
    assert served(stack) == version, "the resumed deploy's version serves"
    last = history(stack)[-1]
    assert (last["result"], last["version"]) == ("succeeded", version), last
    if flow == "rollback":
        running = {c["version"] for c in data["colors"] if c["running"]}
        assert last["strategy"] == "rollback" and running == {version, last["from_version"]}, \
            "a resumed rollback keeps the version it left warm (it never redeploys one onto the other)"


@pytest.mark.parametrize("flow", list(FLOWS))
@pytest.mark.parametrize("sig", ["KILL", "INT"])
def test_stopped_at_every_point_then_resumed(stack, sig, flow):
    """kill -9 or Ctrl-C (exit 130) at each point in turn, each followed by `--resume` (a deploy stopped
    before its journal existed is run again). The resume is itself stopped at the next point when it
    passes it; a point a resume no longer passes (a color this deploy already started, weights the
    router already serves) is reached by the next fresh run, after that resume finished its deploy.
    Every point is stopped once and then resumed; every finished deploy is checked (its version
    serves, no lock, nothing unfinished, no orphan) and no request fails under load throughout."""
    points, resume = FLOWS[flow]

    def fresh() -> list[str]:
        if flow == "rollback":
            if not any(c["weight"] == 0 and c["running"] for c in status(stack)["colors"]):
                stack.cli("deploy", "--version", f"v{next(_versions)}", "--yes", check=True, timeout=180)
            return ["rollback", "--to", _warm_version(stack)]
        return ["deploy", "--version", f"v{next(_versions)}", "--strategy", flow]

    fresh_runs = 0
    with LoadRunner(stack.router_url + "/version", rps=RPS, seconds=600, max_in_flight=32) as stats:
        for point in points:
            if _unfinished(stack):
                version = _journal_version(stack)
                env = {"RAGOPS_TEST_STOP_AT": point, "RAGOPS_TEST_STOP_SIGNAL": sig}
                proc = stack.cli(*resume, "--yes", env=env, timeout=180)
                if proc.returncode == STOPPED[sig]:
                    if sig == "INT":
                        after_ctrl_c(stack, proc, point)
                    continue
                assert proc.returncode == 0, f"{point}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
                _resumed_to_the_end(stack, version, flow)     # `point` is reached by a fresh run below
            fresh_runs += 1
            killed_run(stack, fresh(), point, sig)
        if _unfinished(stack):
            version = _journal_version(stack)
            continuation(stack, "resume", [], resume)
            _resumed_to_the_end(stack, version, flow)
    check_consistent(stack, stats)
    print(f"\n{flow}: {sig} at {len(points)} points, {fresh_runs} fresh runs, {stats.requests} requests")


def test_resume_redoes_a_smoke_test_that_was_not_recorded_as_passed(stack):
    """Item 2: killed in `smoke` on a version that fails it; resume must not route to it."""
    before = served(stack)
    bad = ["deploy", "--version", "vbad", "--set", "RAG_FAULT_ERROR_RATE=1.0"]
    with load(stack) as stats:
        killed_run(stack, bad, "phase:smoke")
        proc = stack.cli("deploy", "--resume", "--yes", timeout=180)
    assert proc.returncode == 3, proc.stderr
    assert "smoke test of vbad" in proc.stderr
    assert "vbad" not in stats.versions_seen and stats.failed == 0
    check_consistent(stack)
    assert served(stack) == before


def test_paused_canary_status_lock_and_promote_analyses_the_last_step(stack):
    version = f"v{next(_versions)}"
    out = stack.json("deploy", "--version", version, "--strategy", "canary", "--pause-at", "50", "--yes")
    assert out["result"] == "paused"
    text = stack.cli("status", check=True).stdout
    assert f"last deploy: {version} canary -> paused (phase paused)" in text
    assert "ragops promote" in text
    lock = stack.cli("lock", "status", check=True).stdout
    assert "pid None" not in lock and "paused canary" in lock
    promoted = stack.json("promote", "--yes")
    assert promoted["result"] == "succeeded"
    names = [s["name"] for s in promoted["steps"]]
    assert "analysis at 100%" in names, names
    check_consistent(stack)
    assert served(stack) == version


def _pid(stack, name: str) -> int:
    return int(json.loads((stack.state_dir / "run" / f"{name}.pid").read_text())["pid"])


def _wait_serving(stack, version: str, timeout: float = 20) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if served(stack) == version:
                return time.monotonic() - start
        except (httpx.HTTPError, ValueError):      # no answer, or the router's 404 while it starts
            pass
        time.sleep(0.1)
    raise AssertionError(f"{version} not served again within {timeout}s")


def test_supervisor_restarts_a_killed_router_and_a_killed_live_color(stack):
    data = status(stack)
    version = expected_version(data)
    live = next(c["color"] for c in data["colors"] if c["weight"] == 100)
    assert data["supervisor"]["running"]
    with load(stack) as stats:
        time.sleep(1)
        os.kill(_pid(stack, "router"), signal.SIGKILL)
        router_back = _wait_serving(stack, version)
        time.sleep(2)
        os.kill(_pid(stack, live), signal.SIGKILL)
        time.sleep(0.3)
        color_back = _wait_serving(stack, version)
        time.sleep(1)
    print(f"\nsupervisor: router back in {router_back:.1f}s, {live} back in {color_back:.1f}s; "
          f"{stats.failed} of {stats.requests} requests failed")
    data = check_consistent(stack)
    assert expected_version(data) == version, "restarted with the version it ran"
    components = data["supervisor"]["components"]
    assert components["router"]["restarts"] >= 1 and components[live]["restarts"] >= 1
    assert components["router"]["last_outage_s"] < 5 and components[live]["last_outage_s"] < 8
    assert "was down" in stack.cli("status", check=True).stdout


def test_up_restores_what_was_live_after_the_router_and_live_color_died(stack):
    data = status(stack)
    version = expected_version(data)
    live = next(c["color"] for c in data["colors"] if c["weight"] == 100)
    supervisor = _pid(stack, "supervisor")
    os.killpg(supervisor, signal.SIGTERM)           # nobody heals: `up` must
    os.kill(_pid(stack, live), signal.SIGKILL)
    os.kill(_pid(stack, "router"), signal.SIGKILL)
    time.sleep(0.5)
    data = status(stack)
    rows = {c["color"]: c["weight"] for c in data["colors"] if c["weight"]}
    assert data["router"]["weights"] == rows, "the header's weights are the rows' weights"
    up = stack.cli("up", check=True, timeout=180)
    assert "already up" not in up.stderr + up.stdout
    # `up` can return before the restarted Traefik has loaded its file ("no available server" for a
    # moment; the CLI status this test used to run first hid it): poll, then check
    _wait_serving(stack, version, timeout=10)
    data = check_consistent(stack)
    assert expected_version(data) == version and served(stack) == version, "up never changes the version"
    # the supervisor's state file names the killed one until the new one writes it: poll, briefly
    deadline = time.monotonic() + 10
    while not status(stack)["supervisor"]["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(stack)["supervisor"]["running"]
    workers = [p for p in _stack_processes(stack) if "ragservice.worker" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) == len([c for c in data["colors"] if c["running"]]), "one worker per running color"
