"""The migration runner: applies the service's versioned SQL files (NNNN_name.sql) in order.

Each file runs in its own transaction, under `SET LOCAL ROLE <app_user>` when given so the app
user owns what it creates, and is recorded in schema_migrations(version, name, applied_at, breaking).
`breaking` (the file's `-- ragops: breaking` marker) tells a running older build whether it can
still serve on this schema: it accepts newer versions up to the first breaking one.
A transaction-level advisory lock keeps two runners from applying the same file twice.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ragops.errors import OperationFailed
from ragops.events import Say as Progress
from ragops.resources import shipped_dir
from ragops.secrets import redact

if TYPE_CHECKING:   # psycopg is imported where a connection is made, not at start-up
    import psycopg

MIGRATION_FILE = re.compile(r"^(\d+)_[\w\-]+\.sql$")
BREAKING_MARK = "-- ragops: breaking"
BREAKING_SCAN_LINES = 5
LOCK_KEY = 7_265_616_730   # pg_advisory_lock key shared by every ragops migration runner



def default_migrations_dir() -> Path:
    """The bundled service's migrations (service/migrations of the checkout, or the copy in the wheel)."""
    return shipped_dir("service") / "migrations"


def migration_files(migrations_dir: Path) -> list[tuple[int, str, Path]]:
    """(version, file name, path) for every migration, in version order."""
    migrations_dir = Path(migrations_dir)
    if not migrations_dir.is_dir():
        raise OperationFailed(f"migrations directory not found: {migrations_dir}")
    found: dict[int, Path] = {}
    for path in migrations_dir.glob("*.sql"):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise OperationFailed(f"{path.name}: migration files must be named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise OperationFailed(f"{path.name}: version {version} is also used by {found[version].name}")
        found[version] = path
    return [(v, found[v].name, found[v]) for v in sorted(found)]


def latest_version(migrations_dir: Path) -> int:
    """The highest version shipped in migrations_dir (0 when there are none)."""
    files = migration_files(migrations_dir)
    return files[-1][0] if files else 0


def breaking_migrations(names: Iterable[str | Path], migrations_dir: Path) -> list[str]:
    """The migrations (file names in migrations_dir, or paths) marked `-- ragops: breaking` in their
    first lines: the running version cannot work with the schema they produce.

    migrations_dir is required: the service deployed is the one at service.path, not the bundled one."""
    base = Path(migrations_dir)
    breaking = []
    for name in names:
        path = Path(name)
        if len(path.parts) == 1:   # a bare file name, as pending_migrations returns
            path = base / path
        try:
            with path.open(encoding="utf-8") as handle:
                head = [handle.readline() for _ in range(BREAKING_SCAN_LINES)]
        except OSError as exc:
            raise OperationFailed(f"cannot read migration {path}: {exc.strerror}") from None
        if any(line.strip().lower().startswith(BREAKING_MARK) for line in head):
            breaking.append(path.name)
    return breaking


def _connect(dsn: str) -> psycopg.Connection:
    import psycopg

    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise OperationFailed(f"cannot connect to the database: {_message(exc)}") from None


def _message(exc: BaseException) -> str:
    """PostgreSQL's one-line message, with any password removed."""
    lines = str(exc).strip().splitlines()
    return redact(lines[0] if lines else type(exc).__name__)


def _applied_versions(conn: psycopg.Connection) -> set[int]:
    table = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if table is None or table[0] is None:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending_migrations(dsn: str, migrations_dir: Path) -> list[str]:
    """The file names not yet recorded in schema_migrations, in the order they would run."""
    files = migration_files(migrations_dir)
    conn = _connect(dsn)
    try:
        applied = _applied_versions(conn)
    finally:
        conn.close()
    return [name for version, name, _ in files if version not in applied]


def apply_migrations(dsn: str, migrations_dir: Path, app_user: str | None = None,
                     progress: Progress | None = None) -> list[str]:
    """Apply the pending migrations; returns the file names applied (empty when up to date).

    `dsn` is a superuser conninfo for the service's database: it creates the `vector` extension
    when the server has it, which needs superuser rights (without them the schema falls back to
    real[] embeddings, reported through `progress`).
    """
    import psycopg
    from psycopg import sql

    report = progress or (lambda message: None)
    files = migration_files(migrations_dir)
    breaking = {version for version, _, path in files if breaking_migrations([path], migrations_dir)}
    role = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app_user)) if app_user else None
    conn = _connect(dsn)
    applied_now: list[str] = []
    try:
        try:
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is not None
            if available:
                try:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.errors.InsufficientPrivilege:
                    available = False   # not a superuser: the schema falls back, as without pgvector
            if not available:
                report("pgvector not available: chunks use the portable real[] embedding column")
            with conn.transaction():
                if role:
                    conn.execute(role)
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                             "version int PRIMARY KEY, name text NOT NULL, "
                             "applied_at timestamptz NOT NULL DEFAULT now())")
                # older builds read this to know how far the schema may move under them
                conn.execute("ALTER TABLE schema_migrations "
                             "ADD COLUMN IF NOT EXISTS breaking boolean NOT NULL DEFAULT false")
                if breaking:   # rows written before the column existed
                    conn.execute("UPDATE schema_migrations SET breaking = true "
                                 "WHERE version = ANY(%s) AND NOT breaking", (sorted(breaking),))
        except psycopg.Error as exc:
            raise OperationFailed(f"cannot prepare migrations: {_message(exc)}") from None

        for version, name, path in files:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                    # checked under the lock: another runner may have applied it meanwhile
                    done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s",
                                        (version,)).fetchone()
                    if done:
                        continue
                    report(f"applying {name}")
                    if role:
                        conn.execute(role)
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute("INSERT INTO schema_migrations (version, name, breaking) VALUES (%s, %s, %s)",
                                 (version, name, version in breaking))
            except psycopg.Error as exc:
                raise OperationFailed(f"migration {name} failed: {_message(exc)}") from None
            applied_now.append(name)
    finally:
        conn.close()
    if not applied_now:
        report("schema is up to date")
    return applied_now
