"""The PostgreSQL side of backups: libpq parameters, connections, row counts, and the
pipeline stages that talk to the PostgreSQL tools (pg_dump as a reader, pg_restore as a sink).

A physical backup is one more reader here: CommandReader("pg_basebackup", [..., "-Ft", "-D", "-"]).
Passwords go into PGPASSWORD, never onto a command line.
"""
from __future__ import annotations

import os

from ragops.backup.pipeline import CommandReader, CommandSink
from ragops.errors import OperationFailed, UsageError


def source_params(config) -> dict:
    """libpq parameters for the environment's database on its primary (superuser)."""
    from psycopg.conninfo import conninfo_to_dict

    if config.database.dsn:
        return conninfo_to_dict(config.reveal(config.database.dsn, "database.dsn"))
    from ragops.db.connect import node_dsn

    return conninfo_to_dict(node_dsn(config, dbname=config.database.name))


def params_from_dsn(dsn: str) -> dict:
    from ragops.secrets import register_secret

    try:
        params = parse_conninfo(dsn)
    except ValueError:
        params = _libpq_parse(dsn)   # what the small parser leaves to libpq (multi-host URIs, ...)
    password = params.get("password")
    register_secret(str(password) if password is not None else None)
    return params


def _libpq_parse(dsn: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - the message could echo the password
        raise UsageError("--target: not a valid PostgreSQL connection string") from None


# Restore never connects through psycopg, so its target is parsed here rather than by importing
# psycopg (about 0.1 s of start-up on an idle machine, several times that on a busy one).
def parse_conninfo(text: str) -> dict:
    """libpq's rules: key=value pairs (values unquoted or single-quoted, backslash escapes), or a
    postgresql:// URI. Raises ValueError on anything it does not understand."""
    if text.startswith(("postgresql://", "postgres://")):
        return _parse_uri(text)
    params: dict = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return params
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if not key or i >= n or text[i] != "=":
            raise ValueError(f"missing '=' after {key!r}")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted string")
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                else:
                    value.append(text[i])
                    i += 1
        params[key] = "".join(value)


def _parse_uri(text: str) -> dict:
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(text)
    if "," in parts.netloc or "[" in parts.netloc:
        raise ValueError("multi-host and IPv6 URIs are left to libpq")
    params: dict = {}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        params["host"] = unquote(parts.hostname)
    if parts.port:
        params["port"] = str(parts.port)
    if parts.path.strip("/"):
        params["dbname"] = unquote(parts.path[1:])
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
        params[key] = value
    return params


def make_conninfo(params: dict) -> str:
    """key='value' pairs with libpq's quoting (backslash before \\ and ')."""
    def quote(value) -> str:
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quote(value)}" for key, value in params.items() if value is not None)


def tool_call(params: dict) -> tuple[str, dict]:
    """A conninfo without the password (it goes into PGPASSWORD, not onto a command line)."""
    rest = {k: v for k, v in params.items() if k != "password"}
    env = {**os.environ, "PGCONNECT_TIMEOUT": str(params.get("connect_timeout") or 10)}
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    return make_conninfo(rest), env


def describe(params: dict) -> str:
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def connect(params: dict, autocommit: bool = True):
    import psycopg

    try:
        return psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=autocommit)
    except psycopg.Error as exc:
        from ragops.secrets import redact

        raise OperationFailed(f"cannot connect to {describe(params)}: {redact(str(exc).strip().splitlines()[0])}") from None


def row_counts(cur, tables: list[str]) -> dict:
    from psycopg import sql

    counts = {}
    for table in tables:
        cur.execute("SELECT to_regclass(%s)::text", (table,))
        regclass = cur.fetchone()[0]
        if regclass is None:
            continue  # counted only where the table exists
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(regclass)))
        counts[table] = cur.fetchone()[0]
    return counts


def pg_tool(config, name: str) -> str:
    from ragops.pg.pgctl import tool

    return tool(name, config.database.bin_dir)


def pg_dump_reader(config, params: dict, snapshot: str) -> CommandReader:
    """The logical reader: pg_dump's custom format, uncompressed (the pipeline compresses), of
    an exported snapshot."""
    conninfo, env = tool_call(params)
    return CommandReader("pg_dump", [pg_tool(config, "pg_dump"), "-Fc", "-Z0", f"--snapshot={snapshot}",
                                     "--no-password", "-d", conninfo], env)


def pg_restore_sink(config, target: dict, extra: list[str]) -> CommandSink:
    conninfo, env = tool_call(target)
    return CommandSink("pg_restore", [pg_tool(config, "pg_restore"), "--no-password", *extra, "-d", conninfo], env)
