"""Patroni on the local platform: one Patroni per database node, its config, its REST API.

Each node's Patroni runs as the account PostgreSQL runs as (ragops/ha/runtime.py), starts the
postmaster as its child and keeps the leader key in etcd. Its REST API listens on 127.0.0.1 with
basic authentication (the password is a generated local secret unless database.patroni.rest_password).
The config file holds passwords: mode 0600, owned by the server account.
"""
from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from ragops.errors import OperationFailed
from ragops.ha.etcd import EtcdCluster
from ragops.pg import pgctl
from ragops.process import ManagedProcess
from ragops.waiting import wait_until

REPLICATION_USER = "replicator"
REST_USER = "ragops"
PG_PARAMETERS = {k: v.strip("'") for k, v in pgctl.BASE_SETTINGS.items() if k != "listen_addresses"}


def scope(config) -> str:
    return config.database.patroni.scope or f"{config.project}-{config.env_name}"


def rest_password(config) -> str:
    from ragops.db.connect import state_secret
    from ragops.secrets import register_secret

    ref = config.database.patroni.rest_password
    if ref:
        value = config.reveal(ref, "database.patroni.rest_password")
        register_secret(value)
        return value
    return state_secret(config, "patroni-rest-password")


def dcs_settings(config) -> dict:
    from ragops.ha.sync import sync_settings

    s = config.database.patroni
    return {"ttl": s.ttl, "loop_wait": s.loop_wait, "retry_timeout": s.retry_timeout,
            "maximum_lag_on_failover": s.maximum_lag_on_failover, **sync_settings(config)}


@dataclass
class PatroniNode:
    name: str
    port: int            # PostgreSQL
    rest_port: int
    node: pgctl.Node
    proc: ManagedProcess
    config_file: Path

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


def nodes(config) -> list[PatroniNode]:
    from ragops.db.connect import all_nodes

    home = pgctl.server_home(config)
    base = home if home is not None else config.state_dir
    result = []
    for index, db_node in enumerate(all_nodes(config)):
        managed = pgctl.managed_node(config, db_node.name)
        result.append(PatroniNode(db_node.name, db_node.port, config.database.patroni.rest_port + index, managed,
                                  ManagedProcess(f"patroni-{db_node.name}", config.state_dir / "run",
                                                 config.state_dir / "logs"),
                                  base / "patroni" / f"{db_node.name}.yml"))
    return result


def find(config, name: str) -> PatroniNode:
    for node in nodes(config):
        if node.name == name:
            return node
    from ragops.db.connect import find_node

    find_node(config, name)   # raises the ConfigError naming the nodes
    raise AssertionError(name)


def node_config(config, node: PatroniNode, password: str) -> dict:
    db = config.database
    bin_dir = str(Path(node.node.pg("pg_ctl")).parent)
    return {
        "scope": scope(config), "name": node.name,
        "log": {"level": "INFO"},
        "restapi": {"listen": f"127.0.0.1:{node.rest_port}", "connect_address": f"127.0.0.1:{node.rest_port}",
                    "authentication": {"username": REST_USER, "password": rest_password(config)}},
        "etcd3": {"hosts": EtcdCluster(config).hosts(), "protocol": "http"},
        "bootstrap": {
            "dcs": {**dcs_settings(config),
                    "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                   "parameters": {"wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                                                  "max_wal_senders": 10, "max_replication_slots": 10,
                                                  "wal_keep_size": "256MB"}}},
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums",
                       {"auth-host": "scram-sha-256"}, {"auth-local": "scram-sha-256"}]},
        "postgresql": {
            "listen": f"127.0.0.1:{node.port}", "connect_address": f"127.0.0.1:{node.port}",
            "data_dir": str(node.node.data_dir), "bin_dir": bin_dir,
            "pgpass": str(node.node.data_dir.parent / f".pgpass-{node.name}"),
            "authentication": {"superuser": {"username": db.superuser, "password": password},
                               "replication": {"username": REPLICATION_USER, "password": password},
                               "rewind": {"username": db.superuser, "password": password}},
            "pg_hba": ["host all all 127.0.0.1/32 scram-sha-256",
                       "host replication all 127.0.0.1/32 scram-sha-256"],
            "parameters": {**PG_PARAMETERS, **archive_parameters(config)},
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True},
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def archive_parameters(config) -> dict[str, str]:
    """The WAL archive on every node (archive_mode=on archives on whichever node leads; a replica
    only starts archiving once promoted), into the one spool the shipper reads (ragops/pitr)."""
    if not config.backups.wal.enabled or config.database.dsn:
        return {}
    from ragops.db.bringup import spool_dir

    return pgctl.archive_settings(spool_dir(config), config.backups.wal.archive_timeout)


def write_config(config, node: PatroniNode, password: str) -> None:
    """The node's Patroni config: created 0600 for the server account (it holds passwords)."""
    path = node.config_file
    pgctl.make_dirs(path.parent)
    text = yaml.safe_dump(node_config(config, node, password), sort_keys=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        account = pgctl.server_account()
        if account is not None:
            os.fchown(handle.fileno(), account.pw_uid, account.pw_gid)
    os.replace(tmp, path)


def start_node(config, node: PatroniNode, password: str) -> None:
    from ragops.ha.runtime import patroni_command

    write_config(config, node, password)
    pgctl.prepare_dir(node.node.data_dir.parent)
    if archive_parameters(config):
        from ragops.db.bringup import spool_dir

        pgctl.prepare_dir(spool_dir(config))
    args, env = patroni_command(node.config_file, pgctl.server_home(config))
    node.proc.start(args, env=env, cwd=Path("/"), marker=str(node.config_file))


# ---- REST API -----------------------------------------------------------------------------------
class Rest:
    """Patroni's REST API on one node (loopback, basic auth for the changing calls)."""

    def __init__(self, config, node: PatroniNode):
        self.url = node.rest_url
        token = base64.b64encode(f"{REST_USER}:{rest_password(config)}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 5) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.strip()

    def get(self, path: str, timeout: float = 2) -> dict | None:
        try:
            status, body = self.call("GET", path, timeout=timeout)
        except OSError:
            return None
        return body if isinstance(body, dict) else None


def any_rest(config) -> Rest:
    """The REST API of the first node that answers (the leader's when it answers)."""
    for node in nodes(config):
        rest = Rest(config, node)
        if rest.get("/cluster") is not None:
            return rest
    raise OperationFailed("no Patroni REST API answers", hint="ragops up (database.ha: patroni)")


def rest_of(config, attempt: int) -> Rest:
    """The REST API to ask on the `attempt`-th try: the nodes that answer, in turn (each Patroni has
    its own etcd connection, so a retry through another node avoids the member one of them waits on)."""
    answering = [n for n in nodes(config) if Rest(config, n).get("/cluster") is not None]
    if not answering:
        raise OperationFailed("no Patroni REST API answers", hint="ragops db status")
    return Rest(config, answering[attempt % len(answering)])


def cluster(config) -> dict | None:
    for node in nodes(config):
        data = Rest(config, node).get("/cluster")
        if data is not None:
            return data
    return None


def leader(config) -> str | None:
    data = cluster(config) or {}
    for member in data.get("members", []):
        if member.get("role") == "leader" and member.get("state") == "running":
            return member["name"]
    return None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """wait_until, failing with what it waited for."""
    value = wait_until(predicate, timeout, interval)
    if not value:
        raise OperationFailed(f"timed out after {timeout:.0f}s waiting for {what}")
    return value
