"""The leader-aware database endpoint (`database.ha: patroni`): one HAProxy in TCP mode that sends a
connection only to the node whose Patroni says it leads.

Each server is checked with `GET /primary` on its Patroni REST API (200 only on the node that holds
the leader key and runs PostgreSQL as primary; Patroni answers 503 once its own view of the key has
expired, so a thawed old leader is not taken back). A node whose Patroni is dead (connection refused)
leaves within ~1 s, a frozen one (the check times out) within ~2.5 s, long before the key's ttl lets
another node lead; `on-marked-down shutdown-sessions` closes the connections it already had, and
`balance first` sends every new connection to one server even if two ever passed their checks at once.
The service's DATABASE_URL and ragops' own writes (migrations) go through it.

Files: <state_dir>/ha/endpoint/haproxy.cfg, the process `db-endpoint` (log logs/db-endpoint.log).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ragops.errors import ConfigError, OperationFailed
from ragops.events import Say
from ragops.events import quiet as _noop
from ragops.ha import patroni
from ragops.process import ManagedProcess

PROC = "db-endpoint"
CHECK_INTER_MS = 500          # well under loop_wait's floor (1 s) and the ttl (>= 20 s)
CHECK_FAST_INTER_MS = 250     # after a first failed check: confirm it quickly
CHECK_TIMEOUT_MS = 800        # a frozen Patroni accepts the TCP connection and never answers


def config_dir(config) -> Path:
    return config.state_dir / "ha" / "endpoint"


def config_file(config) -> Path:
    return config_dir(config) / "haproxy.cfg"


def proc(config) -> ManagedProcess:
    return ManagedProcess(PROC, config.state_dir / "run", config.state_dir / "logs")


def port(config) -> int:
    return int(config.database.patroni.endpoint())


def render(config) -> str:
    """haproxy.cfg: one TCP listener, one server per node, checked on its Patroni REST port."""
    lines = [
        "# written by ragops (ragops/ha/endpoint.py): the leader-aware database endpoint",
        "global",
        "    maxconn 2000",
        "defaults",
        "    mode tcp",
        "    timeout connect 3s",
        "    timeout client 1h",
        "    timeout server 1h",
        f"    timeout check {CHECK_TIMEOUT_MS}ms",
        f"listen {patroni.scope(config)}-primary",
        f"    bind 127.0.0.1:{port(config)}",
        "    balance first",
        "    option httpchk GET /primary",
        "    http-check expect status 200",
        f"    default-server inter {CHECK_INTER_MS}ms fastinter {CHECK_FAST_INTER_MS}ms fall 2 rise 2 "
        "on-marked-down shutdown-sessions",
    ]
    for node in patroni.nodes(config):
        lines.append(f"    server {node.name} 127.0.0.1:{node.port} check port {node.rest_port}")
    return "\n".join(lines) + "\n"


def binary() -> str:
    found = shutil.which("haproxy")
    if not found:
        raise ConfigError("database.ha: patroni needs the haproxy binary for its leader-aware endpoint",
                          hint="apt-get install haproxy")
    return found


def running_config(config) -> str | None:
    try:
        return config_file(config).read_text()
    except OSError:
        return None


def start(config) -> None:
    """(Re)write the config and start HAProxy in the foreground (-db) as a tracked process."""
    text = render(config)
    directory = config_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".haproxy.cfg.tmp"
    tmp.write_text(text)
    tmp.replace(config_file(config))
    proc(config).start([binary(), "-db", "-f", str(config_file(config))], marker=str(config_file(config)))


def ensure(config, progress: Say = _noop) -> list[str]:
    """Start the endpoint unless it runs with the config the file gives now; restart it (and say why)
    when the nodes, ports or checks changed."""
    process = proc(config)
    if process.running():
        if running_config(config) == render(config):
            return []
        progress(f"restarting the database endpoint on 127.0.0.1:{port(config)}: its nodes or checks changed")
        start(config)
        return ["restart db-endpoint (config changed)"]
    progress(f"starting the database endpoint on 127.0.0.1:{port(config)} (HAProxy, GET /primary on each Patroni)")
    start(config)
    return ["start db-endpoint"]


def stop(config) -> bool:
    process = proc(config)
    was = process.running()
    process.stop(timeout=5)
    return was


def dsn(config, dbname: str | None = None, user: str | None = None, connect_timeout: int = 3) -> str:
    """A conninfo through the endpoint, as the superuser unless `user` is given."""
    from ragops.db.connect import db_password

    db = config.database
    return (f"host=127.0.0.1 port={port(config)} dbname={dbname or db.name} user={user or db.superuser} "
            f"password={db_password(config)} connect_timeout={connect_timeout} application_name=ragops")


def writable(config, timeout: int = 2) -> bool:
    """True when a connection through the endpoint reaches a primary that accepts writes."""
    import psycopg

    try:
        with psycopg.connect(dsn(config, dbname="postgres", connect_timeout=timeout), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] is False and row[1] == "off"


def wait_writable(config, timeout: float, progress: Say = _noop) -> None:
    """Until the endpoint reaches a writable leader (after quorum loss Patroni needs etcd back and a
    loop or two), saying every few seconds that it still waits."""
    started = time.monotonic()
    said = started
    while not writable(config):
        now = time.monotonic()
        if now - started > timeout:
            raise OperationFailed(f"no writable leader through the database endpoint after {timeout:.0f}s",
                                  hint="ragops db status (etcd quorum? a leader?)")
        if now - said >= 5:
            progress(f"waiting for a writable leader behind the database endpoint ({now - started:.0f}s)")
            said = now
        time.sleep(0.5)
