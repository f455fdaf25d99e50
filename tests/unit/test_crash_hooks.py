"""The crash-test hook, weight comparison, and process groups (children of a killed parent are stopped)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ragops.deploy.states import BLUE_GREEN_POINTS, CANARY_POINTS, ROLLBACK_POINTS, live_matches, next_step
from ragops.process import ManagedProcess, group_members


def _run_hook(env: dict) -> int:
    code = ("from ragops.deploy.states import checkpoint\n"
            "checkpoint('phase:start'); checkpoint('before:weights'); checkpoint('before:weights')\n"
            "print('passed')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    return proc.returncode


def test_the_hook_stops_the_process_only_at_its_point():
    assert _run_hook({}) == 0
    assert _run_hook({"RAGOPS_TEST_STOP_AT": "phase:smoke"}) == 0
    assert _run_hook({"RAGOPS_TEST_STOP_AT": "before:weights"}) == -signal.SIGKILL
    assert _run_hook({"RAGOPS_TEST_STOP_AT": "before:weights#2"}) == -signal.SIGKILL
    assert _run_hook({"RAGOPS_TEST_STOP_AT": "before:weights#3"}) == 0
    # the Ctrl-C variant raises KeyboardInterrupt (uncaught here: python dies of SIGINT; the CLI exits 130)
    assert _run_hook({"RAGOPS_TEST_STOP_AT": "phase:start", "RAGOPS_TEST_STOP_SIGNAL": "INT"}) == -signal.SIGINT


def test_points_cover_every_phase_and_change():
    for points in (BLUE_GREEN_POINTS, CANARY_POINTS, ROLLBACK_POINTS):
        assert len(set(points)) == len(points)
    assert {"lock-taken", "phase:switched", "before:weights", "after:weights", "before:start"} <= set(BLUE_GREEN_POINTS)


def test_live_weights_match_ignores_zero_weights():
    assert live_matches({"green": 100}, {"green": 100, "blue": 0})
    assert not live_matches({"blue": 100}, {"green": 100, "blue": 0})
    assert not live_matches(None, {"green": 100})


def test_next_step_names_the_right_continuation():
    assert "ragops rollback --resume" in next_step({"strategy": "rollback", "phase": "flip"})
    assert "ragops deploy --resume" in next_step({"strategy": "canary", "phase": "canary-step"})
    assert "ragops promote" in next_step({"strategy": "canary", "phase": "paused"})


def test_stop_kills_the_children_a_killed_parent_left(tmp_path):
    proc = ManagedProcess("svc", tmp_path / "run", tmp_path / "logs")
    pid = proc.start(["sh", "-c", "sleep 60 & sleep 60 & wait", "svc-marker"], marker="svc-marker")
    deadline = time.monotonic() + 5
    while len(group_members(pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(pid)) == 3
    os.kill(pid, signal.SIGKILL)            # the parent dies; its two children stay in its group
    os.waitpid(pid, 0)
    assert proc.pid() is None and len(group_members(pid)) == 2
    proc.stop(timeout=2)
    deadline = time.monotonic() + 5
    while group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(pid) == []
    assert not proc.pid_file.exists()


def _wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_restart_never_leaves_the_previous_process_running(tmp_path):
    proc = ManagedProcess("svc", tmp_path / "run", tmp_path / "logs")
    first = proc.start(["sleep", "60"], marker="60")
    _wait_for(lambda: proc.pid() == first)      # exec'd (the marker is in its command line)
    second = proc.start(["sleep", "61"], marker="61")
    _wait_for(lambda: proc.pid() == second)
    assert first != second
    assert not os.path.exists(f"/proc/{first}"), "the first one was stopped (and reaped)"
    proc.stop(timeout=2)
