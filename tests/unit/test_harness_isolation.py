"""The test harness itself (tests/conftest.py): a session does not read the user's config cache, and a
session started with SIGINT ignored (`pytest &` in a script) can still interrupt the children it starts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pytest(test: str, env: dict, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=REPO,
                          env=env, preexec_fn=preexec, capture_output=True, text=True, timeout=120)


def test_a_session_ignores_the_config_cache_it_inherits(tmp_path):
    cache = tmp_path / "user-cache"
    tmp_path.chmod(0o700)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("RAGOPS_NO_CONFIG_CACHE", None)
    # what a user's `ragops config validate` in the checkout leaves behind
    subprocess.run([sys.executable, "-m", "ragops.cli.main", "config", "validate"], cwd=REPO, env=env,
                   capture_output=True, timeout=120, check=True)
    assert list((cache / "ragops").glob("*.pickle"))
    proc = _pytest("tests/unit/test_cli_and_engines.py::test_ctrl_c_exits_130_and_says_what_to_run", env)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_a_session_started_with_sigint_ignored_still_interrupts_its_children():
    proc = _pytest("tests/unit/test_crash_hooks.py::test_the_hook_stops_the_process_only_at_its_point",
                   dict(os.environ), preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == 0, proc.stdout[-2000:]
