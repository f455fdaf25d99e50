"""Shared fixtures. Integration fixtures start real processes on free loopback ports.

In CI (RAGOPS_REQUIRE_INTEGRATION=1) a missing component fails the test instead of skipping it,
so a run can never go green by skipping.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ragops.netutil import free_port, wait_port

REPO = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("RAGOPS_REQUIRE_INTEGRATION") == "1"

# One config cache per test session (the children inherit it): the user's ~/.cache/ragops, or another
# session's, holds configs validated by other code and other checkouts.
TEST_CACHE = Path(tempfile.mkdtemp(prefix="ragops-test-cache-"))
os.environ["XDG_CACHE_HOME"] = str(TEST_CACHE)

# A run started in the background (`pytest &` in a script) inherits SIGINT ignored, and every child it
# starts would too (exec keeps an ignored signal), so the Ctrl-C tests could not interrupt them.
# A handler is reset to the default by exec: the children the tests signal get the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


def need(condition: bool, what: str) -> None:
    """Skip locally when a component is missing; fail in CI."""
    if condition:
        return
    if REQUIRED:
        pytest.fail(f"required component missing in CI: {what}")
    pytest.skip(f"component missing: {what}")


def server_tmpdir(prefix: str) -> Path:
    """A temp dir outside pytest's basetemp: pytest re-tightens that one to 0700 when another
    session starts, which locks the unprivileged PostgreSQL account out of its data directory."""
    path = Path(tempfile.mkdtemp(prefix=f"ragops-{prefix}-"))
    path.chmod(0o755)   # ours: as root, the PostgreSQL account must reach the data directories in it
    return path


def require_module(name: str):
    """Import a test dependency; skip locally without it, fail in CI (an ImportError)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')", allow_module_level=True)


@contextlib.contextmanager
def primary_and_replica(prefix: str, names: tuple[str, str] = ("primary", "replica1")):
    """A real PostgreSQL primary + streaming replica (pgserver binaries) on free ports, in a
    directory of its own; stopped and removed on exit."""
    from ragops.errors import OperationFailed
    from ragops.pg import pgctl

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001 - reported as a missing component
        need(False, f"PostgreSQL binaries ({exc})")
    base = server_tmpdir(prefix)
    password = "pw-" + secrets.token_hex(8)
    home = base if os.geteuid() == 0 else None   # as root: binaries copied where the server account reaches them
    primary = pgctl.Node(names[0], base / names[0], free_port(), base / "logs" / f"{names[0]}.log", home=home)
    replica = pgctl.Node(names[1], base / names[1], free_port(), base / "logs" / f"{names[1]}.log", home=home)
    slot = names[1].replace("-", "_")
    dsn = f"host=127.0.0.1 port={primary.port} user=postgres password={password} dbname=postgres"
    try:
        primary.init_primary("postgres", password)
        primary.start()
        try:
            replica.clone_from(primary, "postgres", password, slot)
        except OperationFailed:
            # seen once on a loaded shared machine; a second base backup has always worked
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = %s", (slot,))
            replica.clone_from(primary, "postgres", password, slot)
        replica.start()
        yield {"primary": primary, "replica": replica, "password": password, "user": "postgres", "dsn": dsn,
               "replica_dsn": f"host=127.0.0.1 port={replica.port} user=postgres password={password} dbname=postgres"}
    finally:
        for node in (replica, primary):
            try:
                node.stop(mode="immediate")
            except Exception:  # noqa: BLE001
                node.kill9()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """The shared primary + replica of the whole session (tests create their own databases in it
    and never promote or stop it)."""
    with primary_and_replica("pg") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """This checkout as a wheel (`pip wheel --no-deps`), built once per session: the packaging tests
    read it, tests/integration/test_first_run.py installs it into a fresh venv."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO), "-w", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [built] = out.glob("ragops-*.whl")
    return built


@pytest.fixture(scope="session")
def moto_server():
    """The moto server (S3, Route 53) as a separate process over HTTP; yields its endpoint URL."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    need(Path(exe).exists(), "moto_server (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_port("127.0.0.1", port, 30), "moto_server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials for boto3 against the moto server (never real AWS)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
