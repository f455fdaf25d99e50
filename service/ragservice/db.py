"""PostgreSQL access: a small self-healing connection pool, the schema check, and the queries.

The conninfo may list several hosts with target_session_attrs=read-write. A connection that
breaks (primary gone) or turns out read-only (demoted) is thrown away together with every idle
one, so the next checkout makes libpq pick whichever node is the primary now.
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import errors as pgerrors

from ragservice import text, tracing

log = logging.getLogger("ragservice.db")

MIGRATION_FILE = re.compile(r"^(\d+)_[\w\-]+\.sql$")
MAX_CONNECTION_AGE = 300.0   # seconds; old connections are recycled so load rebalances


class DatabaseUnavailable(Exception):
    """No usable read-write connection right now (the API answers 503)."""


def latest_migration(migrations_dir: Path) -> int:
    """The highest migration version shipped with this build (0 when none)."""
    versions = [int(m.group(1)) for p in migrations_dir.glob("*.sql") if (m := MIGRATION_FILE.match(p.name))]
    return max(versions, default=0)


class ConnectFailed(DatabaseUnavailable):
    """No connection could be made (the server is down, starting, or a standby for a read-write
    session): worth another try, unlike a pool with no free connection or no URL at all."""


def _server_gone(exc: BaseException) -> bool:
    """No writable server right now (worth waiting for), as opposed to an error the server
    answered (a too-large value is an OperationalError too: retrying it would only be slower)."""
    if isinstance(exc, (ConnectFailed, pgerrors.ReadOnlySqlTransaction, pgerrors.AdminShutdown,
                        pgerrors.CannotConnectNow)):
        return True
    return isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None


def _is_connection_problem(exc: BaseException) -> bool:
    # ReadOnlySqlTransaction: we are talking to a node that has become a standby
    return isinstance(exc, (psycopg.OperationalError, pgerrors.ReadOnlySqlTransaction,
                            pgerrors.AdminShutdown, pgerrors.CannotConnectNow))


class Pool:
    """At most `size` connections; idle ones are reused, broken ones never come back."""

    def __init__(self, dsn: str, size: int = 10, acquire_timeout: float = 10.0, retry_seconds: float = 0.0):
        self.dsn = dsn
        self.size = size
        self.acquire_timeout = acquire_timeout
        self.retry_seconds = retry_seconds     # run(): how long a lost database is waited for
        self._slots = threading.BoundedSemaphore(size)
        self._idle: deque[tuple[psycopg.Connection, float]] = deque()
        self._lock = threading.Lock()
        self._embedding_type: str | None = None
        # defaults only where the conninfo is silent: keyword arguments would override it
        try:
            given = psycopg.conninfo.conninfo_to_dict(dsn) if dsn else {}
        except psycopg.ProgrammingError:
            given = {}
        self._defaults = {k: v for k, v in {"connect_timeout": 5, "application_name": "ragservice"}.items()
                          if k not in given}

    def _connect(self) -> psycopg.Connection:
        if not self.dsn:
            raise DatabaseUnavailable("RAG_DATABASE_URL is not set")
        try:
            return psycopg.connect(self.dsn, autocommit=True, **self._defaults)
        except psycopg.Error as exc:
            raise ConnectFailed(_one_line(exc)) from None

    def discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn, _ in idle:
            conn.close()

    @contextmanager
    def connection(self):
        if not self._slots.acquire(timeout=self.acquire_timeout):
            raise DatabaseUnavailable("no free database connection")
        conn = None
        try:
            with self._lock:
                while self._idle and conn is None:
                    candidate, born = self._idle.pop()
                    if candidate.closed or time.monotonic() - born > MAX_CONNECTION_AGE:
                        candidate.close()
                    else:
                        conn, conn_born = candidate, born
            if conn is None:
                conn, conn_born = self._connect(), time.monotonic()
            try:
                yield conn
            except BaseException as exc:
                if _is_connection_problem(exc):
                    conn.close()
                    self.discard_idle()   # they point at the same lost server
                raise
            finally:
                if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    with self._lock:
                        self._idle.append((conn, conn_born))
                elif not conn.closed:
                    conn.close()
        finally:
            self._slots.release()

    def run(self, work, retries: int = 1):
        """Call work(conn) inside a transaction. A lost or read-only connection, or a failed
        connect, is retried on a fresh one: at once `retries` times, then with a growing pause
        until `retry_seconds` have passed (a switchover or a restart of the primary is a few
        seconds without a writable server: the request waits instead of failing with 503). The
        failed transaction was rolled back, so a retry starts clean (only a commit whose
        acknowledgement was lost in the crash could run twice)."""
        deadline = time.monotonic() + self.retry_seconds
        pause, attempt = 0.05, 0
        while True:
            try:
                with self.connection() as conn:
                    with conn.transaction():
                        return work(conn)
            except Exception as exc:  # noqa: BLE001 - classified below
                if not (_is_connection_problem(exc) or isinstance(exc, ConnectFailed)):
                    raise
                attempt += 1
                waiting = attempt > retries
                if waiting and (not _server_gone(exc) or time.monotonic() + pause > deadline):
                    raise DatabaseUnavailable(_one_line(exc)) from None
                log.warning("database connection lost, retrying: %s", _one_line(exc))
                if waiting:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)

    def close(self) -> None:
        self.discard_idle()

    def embedding_type(self, conn) -> str:
        """'vector' (pgvector) or 'real[]': what the migration chose for chunks.embedding."""
        if self._embedding_type is None:
            row = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass('chunks') AND attname = 'embedding'").fetchone()
            if row is None:
                raise DatabaseUnavailable("schema not migrated (no chunks table)")
            self._embedding_type = "vector" if row[0].startswith("vector") else "real[]"
        return self._embedding_type


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


# --- readiness ---------------------------------------------------------------------------------

def readiness(pool: Pool, expected_version: int) -> tuple[bool, str, int | None, int]:
    """(ready, reason, schema_version, newest accepted version): reachable, read-write primary, and
    a schema from this build's own version up to the newest one not behind a breaking migration."""
    try:
        with pool.connection() as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if in_recovery:
                conn.close()          # never keep a standby connection
                pool.discard_idle()
                return False, "connected to a standby, not a read-write primary", None, expected_version
            version = schema_version(conn)
            newest = accepted_up_to(conn, expected_version) if version is not None else expected_version
    except DatabaseUnavailable as exc:
        return False, f"database unreachable: {exc}", None, expected_version
    except psycopg.Error as exc:
        return False, f"database error: {_one_line(exc)}", None, expected_version
    if version is None:
        return False, "schema_migrations is missing: migrations not applied", None, expected_version
    if not expected_version <= version <= newest:
        return (False, f"schema version {version}, this build accepts {expected_version} to {newest}",
                version, newest)
    return True, "ok", version, newest


def accepted_up_to(conn, own_version: int) -> int:
    """The newest schema version this build can serve on: migrations after its own are expand-only
    unless marked breaking (ragops records the `-- ragops: breaking` marker in schema_migrations)."""
    has_marker = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'schema_migrations' AND column_name = 'breaking'").fetchone()
    if not has_marker:   # migrated by a runner that does not record the marker: only our own version
        return own_version
    first_breaking, newest = conn.execute(
        "SELECT min(version) FILTER (WHERE breaking), coalesce(max(version), 0) "
        "FROM schema_migrations WHERE version > %s", (own_version,)).fetchone()
    if first_breaking is not None:
        return first_breaking - 1
    return max(newest, own_version)


def schema_version(conn) -> int | None:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        return None
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


# --- documents ---------------------------------------------------------------------------------

def _vector_param(values: list[float], kind: str):
    if kind == "vector":
        return "[" + ",".join(f"{v:.6g}" for v in values) + "]"
    return values


def store_chunks(pool: Pool, conn, document_id, content: str) -> int:
    """Chunk, embed and insert a document's chunks (replacing any); returns how many."""
    kind = pool.embedding_type(conn)
    cast = "vector" if kind == "vector" else "real[]"
    conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
    pieces = text.chunk(content)
    with tracing.span("embedding", chunks=len(pieces)):
        rows = [(document_id, i, piece, _vector_param(text.embed(piece), kind)) for i, piece in enumerate(pieces)]
    with tracing.span("database_insert", table="chunks", rows=len(rows)), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO chunks (document_id, ordinal, content, embedding) VALUES (%s, %s, %s, %s::{cast})", rows)
    return len(pieces)


def create_document(pool: Pool, title: str, content: str, metadata: dict, queued: bool) -> dict:
    """Store a document. Synchronously chunked and embedded, or queued for the worker."""
    document_id = uuid.uuid4()

    def work(conn):
        with tracing.span("database_insert", table="documents", document_id=str(document_id)):
            conn.execute(
                "INSERT INTO documents (id, title, content, metadata, status) VALUES (%s, %s, %s, %s::jsonb, %s)",
                (document_id, title, content, json.dumps(metadata), "queued" if queued else "ready"))
        if queued:
            with tracing.span("queue_publish", queue="ingest_jobs"):
                conn.execute("INSERT INTO ingest_jobs (document_id) VALUES (%s)", (document_id,))
            return 0
        return store_chunks(pool, conn, document_id, content)

    chunks = pool.run(work)
    return {"id": str(document_id), "title": title, "chunks": chunks}


def get_document(pool: Pool, document_id: uuid.UUID) -> dict | None:
    def work(conn):
        return conn.execute(
            "SELECT d.id, d.title, d.content, d.metadata, d.status, d.created_at, "
            "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id) "
            "FROM documents d WHERE d.id = %s", (document_id,)).fetchone()

    row = pool.run(work)
    if row is None:
        return None
    return {"id": str(row[0]), "title": row[1], "content": row[2], "metadata": row[3], "status": row[4],
            "created_at": row[5].isoformat(), "chunks": row[6]}


def delete_document(pool: Pool, document_id: uuid.UUID) -> bool:
    return pool.run(lambda conn: conn.execute(
        "DELETE FROM documents WHERE id = %s", (document_id,)).rowcount > 0)


# Below this many chunks an exact scan is cheap (20k chunks: ~30 ms here) and always right;
# HNSW is approximate, and a graph of many identical vectors (drills repeating one text
# thousands of times) is a trap its greedy walk cannot leave, whatever ef_search is
EXACT_SEARCH_MAX_CHUNKS = 100_000
HNSW_EF_SEARCH = 400


def _nearest_vectors(conn, query_vec: list[float], top_k: int) -> list[tuple]:
    """pgvector: exact for a corpus of the bundled service's size, HNSW above it; an approximate
    answer padded with unrelated chunks (score <= 0) may be a stuck walk, so it is redone exactly."""
    sql = ("SELECT document_id, id, content, 1 - (embedding <=> %(q)s::vector) AS score "
           "FROM chunks ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s")
    params = {"q": _vector_param(query_vec, "vector"), "k": top_k}
    # reltuples is the planner's estimate: free to read, -1 before the first ANALYZE (small)
    estimate = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass").fetchone()[0]
    if estimate > EXACT_SEARCH_MAX_CHUNKS:
        conn.execute(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}")
        rows = conn.execute(sql, params).fetchall()
        if len(rows) == top_k and all(r[3] is not None and r[3] > 0 for r in rows):
            return rows
    conn.execute("SET LOCAL enable_indexscan = off")   # a sequential scan: every chunk is compared
    return conn.execute(sql, params).fetchall()


def search(pool: Pool, query: str, top_k: int) -> list[dict]:
    """The top_k chunks by cosine similarity (pgvector's <=> when available)."""
    with tracing.span("embedding"):
        query_vec = text.embed(query)
    if not any(query_vec):
        return []   # only stop words: nothing to compare (a zero vector has no cosine)

    def work(conn):
        if pool.embedding_type(conn) == "vector":
            with tracing.span("vector_search", top_k=top_k):
                return _nearest_vectors(conn, query_vec, top_k)
        # portable fallback: the dot product of normalised vectors, computed in SQL
        sql = ("SELECT document_id, id, content, "
               "(SELECT coalesce(sum(a * b), 0) FROM unnest(embedding, %(q)s::real[]) AS t(a, b)) AS score "
               "FROM chunks ORDER BY score DESC LIMIT %(k)s")
        return conn.execute(sql, {"q": query_vec, "k": top_k}).fetchall()

    # a chunk with no indexable word has a zero vector: pgvector gives NaN, JSON cannot carry it
    return [{"document_id": str(r[0]), "chunk_id": r[1], "content": r[2],
             "score": 0.0 if r[3] is None or math.isnan(r[3]) else round(float(r[3]), 6)}
            for r in pool.run(work)]


def random_chunks(pool: Pool, k: int) -> list[dict]:
    """k chunks drawn at random (RAG_FAULT_RETRIEVAL=shuffle: plausible answers from the wrong documents)."""
    rows = pool.run(lambda conn: conn.execute(
        "SELECT document_id, id, content FROM chunks ORDER BY random() LIMIT %(k)s", {"k": k}).fetchall())
    return [{"document_id": str(r[0]), "chunk_id": r[1], "content": r[2]} for r in rows]


# --- the ingest queue ----------------------------------------------------------------------------

def process_next_job(pool: Pool) -> str | None:
    """Claim one queued job (FOR UPDATE SKIP LOCKED, so workers never collide), chunk and embed its
    document, and mark it done, all in one transaction: a worker that dies mid-job leaves it
    queued. Returns the document id processed, or None when the queue is empty."""

    def work(conn):
        job = conn.execute(
            "SELECT j.id, j.document_id, d.content FROM ingest_jobs j JOIN documents d ON d.id = j.document_id "
            "WHERE j.status = 'queued' ORDER BY j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED").fetchone()
        if job is None:
            return None
        job_id, document_id, content = job
        try:
            with conn.transaction():   # a savepoint: a bad document fails its job, not the worker
                store_chunks(pool, conn, document_id, content)
            status, error = "done", None
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            if _is_connection_problem(exc):
                raise
            status, error = "failed", _one_line(exc)
        conn.execute("UPDATE ingest_jobs SET status = %s, attempts = attempts + 1, last_error = %s, "
                     "updated_at = now() WHERE id = %s", (status, error, job_id))
        conn.execute("UPDATE documents SET status = %s WHERE id = %s",
                     ("ready" if status == "done" else "failed", document_id))
        return str(document_id) if status == "done" else f"{document_id} (failed: {error})"

    return pool.run(work)



def queue_depth(conn) -> tuple[int, float]:
    """Queued ingestion jobs and the age in seconds of the oldest one (0 when none): what the
    worker autoscaler reads as rag_ingest_queue_length. One index-backed query, bounded to 1 s."""
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = '1s'")
        row = conn.execute("SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) "
                           "FROM ingest_jobs WHERE status = 'queued'").fetchone()
    return int(row[0]), float(row[1])
