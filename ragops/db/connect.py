"""Connection strings for an environment's database nodes.

The password comes from `database.password` (a secret reference). On a platform that generates
local secrets (local) an unset password is generated once and kept in the state directory (mode
0600), never in ragops.yaml.
"""
from __future__ import annotations

import os
import secrets as pysecrets
from typing import Literal, overload

from ragops.config import Config, DbNode
from ragops.errors import ConfigError
from ragops.pg.conninfo import conninfo
from ragops.pg.nodes import all_nodes, find_node  # re-exported: the engines' callers import them from here
from ragops.platforms import platform_class
from ragops.private_fs import private_dirs
from ragops.secrets import register_secret


@overload
def state_secret(config: Config, name: str, *, generate: Literal[True] = True, length: int = 24) -> str: ...
@overload
def state_secret(config: Config, name: str, *, generate: bool, length: int = 24) -> str | None: ...


def state_secret(config: Config, name: str, *, generate: bool = True, length: int = 24) -> str | None:
    """A secret kept under <state_dir>/secrets/<name>; generated on first use when allowed."""
    path = config.state_dir / "secrets" / name
    if path.exists():
        value = path.read_text().strip()
    elif generate:
        private_dirs(path.parent)
        os.chmod(path.parent, 0o700)
        value = pysecrets.token_urlsafe(length)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
    else:
        return None
    register_secret(value)
    return value


def db_password(config: Config) -> str:
    db = config.database
    if db.password:
        return config.reveal(db.password, "database.password")
    platform = platform_class(config)
    if platform.generates_local_secrets:
        return state_secret(config, "db-password")
    raise ConfigError(f"environments.{config.env_name}.database.password: required for the "
                      f"{platform.name} platform (a secret reference like ${{env:PGPASSWORD}})")


def api_keys(config: Config) -> list[str]:
    """The service's API keys: `service.api_keys` (comma-separated), else a generated local key."""
    platform = platform_class(config)
    if config.service.api_keys:
        raw = config.reveal(config.service.api_keys, "service.api_keys")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
    elif platform.generates_local_secrets:
        keys = [state_secret(config, "api-key")]
    else:
        raise ConfigError(f"environments.{config.env_name}.service.api_keys: required for the "
                          f"{platform.name} platform")
    for key in keys:
        register_secret(key)
    return keys


def node_dsn(config: Config, node: DbNode | str | None = None, dbname: str | None = None,
             user: str | None = None, connect_timeout: int = 5) -> str:
    """A libpq conninfo for one node, as the superuser unless `user` is given."""
    if isinstance(node, str):
        node = find_node(config, node)
    node = node or config.database.primary
    db = config.database
    host, port = platform_class(config).database_address(config, node)   # docker: the container's address
    return conninfo(host=host, port=port, dbname=dbname or db.name, user=user or db.superuser,
                    password=db_password(config), connect_timeout=connect_timeout, application_name="ragops")


def app_dsn(config: Config) -> str:
    """The service's conninfo: every node listed, `target_session_attrs=read-write`, so after a
    promotion the service reconnects to whichever node is the primary without a redeploy. With
    Patroni: its leader-aware endpoint only (PostgreSQL's own view would let a fenced-off old primary in)."""
    db = config.database
    if db.dsn:
        return config.reveal(db.dsn, "database.dsn")
    # Patroni on nodes ragops runs: the leader-aware endpoint (ragops/ha/endpoint.py)
    if db.ha == "patroni" and platform_class(config).owns_database_files:
        return (f"host=127.0.0.1 port={db.patroni.endpoint()} dbname={db.name} user={db.user} "
                f"password={db_password(config)} connect_timeout=3 application_name=ragservice")
    nodes = all_nodes(config)
    hosts = ",".join(n.host for n in nodes)
    ports = ",".join(str(n.port) for n in nodes)
    return conninfo(host=hosts, port=ports, dbname=db.name, user=db.user, password=db_password(config),
                    target_session_attrs="read-write", connect_timeout=3, application_name="ragservice")


def connect(dsn: str, autocommit: bool = True):
    import psycopg

    return psycopg.connect(dsn, autocommit=autocommit)
