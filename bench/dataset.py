"""A service-shaped dataset for the benchmarks: the service's own schema (service/migrations),
documents + chunks with realistic-ish text and 256-dim vectors, and the HNSW index.

    python bench/dataset.py --dsn "host=127.0.0.1 port=5432 dbname=bench user=postgres" --size-mb 100

Reusable from another benchmark (the point-in-time recovery one):

    from bench.dataset import create_dataset
    stats = create_dataset(conninfo, size_mb=1000)   # {'seconds': ..., 'db_bytes': ..., ...}

Why this and not pgbench: pgbench's rows compress about 150x, so a backup benchmark on them
measures start-up rather than streaming. Here the text is drawn from a skewed vocabulary
(compresses a few times, like prose) and the embeddings are random floats (barely compress),
so the dump compresses about as much as a real corpus.

Everything is generated inside PostgreSQL (INSERT ... SELECT over generate_series and random()),
in batches; the HNSW index is built once after loading (dropped before, recreated after), which
is much faster than maintaining it row by row.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNKS_PER_DOC = 8
WORDS_PER_CHUNK = 120          # ~800 bytes of text per chunk
DIM = 256
# measured: heap + TOAST + btree + HNSW per chunk (text is stored twice: chunk and document),
# and what an empty database with the schema already takes
BYTES_PER_CHUNK = 4000
EMPTY_DB_BYTES = 8_000_000
BATCH_DOCS = 2000

# A vocabulary of ordinary operations / retrieval words; picked with a skew (power(random(), 3)),
# so a few words are frequent and most are rare, as in prose.
_WORDS = """
the of and to in a is that for it as with was on be by this are or from at an which have not
but all were when we there can been has more if will one their so about out up what only into
other time some could these two may then do first any like now than its such over also new
service database backup restore replica primary index query vector embedding chunk document
latency throughput request response deploy rollback canary traffic router health check probe
memory storage network region failover snapshot archive stream segment checkpoint transaction
search ranking relevance token model context window retrieval answer question source citation
cluster node worker queue job retry timeout error warning limit quota budget alert incident
owner team review policy access secret key rotation audit compliance schedule report metric
latency percentile median histogram counter gauge sample window rate burst capacity scaling
upgrade migration schema column table row constraint foreign primary unique partition vacuum
analyze planner cost estimate buffer cache page disk write read flush commit abort lock wait
customer contract invoice payment order shipment product catalog price discount region market
research paper experiment result method dataset training evaluation baseline benchmark figure
because however therefore although while before after during between within without against
quickly slowly carefully usually rarely often never always sometimes again further instead
important different available possible necessary several various specific general common large
small recent previous current following significant relevant complete simple complex reliable
"""
VOCABULARY = _WORDS.split()


def _sql_words() -> str:
    return "ARRAY[" + ",".join("'" + w.replace("'", "''") + "'" for w in VOCABULARY) + "]::text[]"


def _stage_sql(first_doc: int, last_doc: int) -> str:
    """One row per chunk: (doc, ordinal, text). The subquery references the outer row so it runs per row."""
    n = len(VOCABULARY)
    return f"""
        INSERT INTO _stage (doc, ordinal, body)
        SELECT d, o, (SELECT string_agg(({_sql_words()})[1 + floor(power(random(), 3) * {n})::int], ' ')
                      FROM generate_series(1, {WORDS_PER_CHUNK} - 20 + (d * 7 + o) % 40) AS g
                      WHERE g IS NOT NULL AND d IS NOT NULL)
        FROM generate_series({first_doc}, {last_doc}) AS d, generate_series(0, {CHUNKS_PER_DOC - 1}) AS o
    """


LOAD_DOCUMENTS = """
    INSERT INTO documents (id, title, content, metadata, status, created_at)
    SELECT md5('doc' || doc)::uuid, 'Document ' || doc || ': ' || left(min(body) FILTER (WHERE ordinal = 0), 60),
           string_agg(body, E'\\n\\n' ORDER BY ordinal),
           jsonb_build_object('source', 'bench', 'n', doc, 'lang', 'en'), 'ready',
           now() - (doc % 1000) * interval '1 hour'
    FROM _stage GROUP BY doc
"""

LOAD_CHUNKS = f"""
    INSERT INTO chunks (document_id, ordinal, content, embedding)
    SELECT md5('doc' || doc)::uuid, ordinal, body,
           (SELECT array_agg(random()::real * 2 - 1) FROM generate_series(1, {DIM}) AS g
            WHERE g IS NOT NULL AND doc IS NOT NULL)::vector
    FROM _stage
"""


def create_dataset(conninfo: str, size_mb: int = 1000, progress: Callable[[str], None] | None = print) -> dict:
    """Apply the service's migrations to the (empty) database at `conninfo` (a superuser: it
    creates the vector extension), fill it to about `size_mb`, build the HNSW index, and return
    {'seconds', 'load_seconds', 'index_seconds', 'db_bytes', 'documents', 'chunks'}."""
    import psycopg

    from ragops.pg.migrate import apply_migrations, default_migrations_dir

    say = progress or (lambda message: None)
    start = time.monotonic()
    apply_migrations(conninfo, default_migrations_dir(), progress=say)
    chunks_wanted = max(CHUNKS_PER_DOC, (size_mb * 1_000_000 - EMPTY_DB_BYTES) // BYTES_PER_CHUNK)
    docs = chunks_wanted // CHUNKS_PER_DOC
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regtype('vector') IS NULL").fetchone()[0]:
            raise SystemExit("pgvector is not available on this server: the dataset needs vector(256)")
        # the HNSW build stays in memory only while its graph fits: at 4 GB (a million vectors) with
        # 512 MB it spilled and ran for more than half an hour on one core
        conn.execute(f"SET maintenance_work_mem = '{min(8192, max(512, size_mb))}MB'")
        conn.execute(f"SET max_parallel_maintenance_workers = {max(1, (os.cpu_count() or 2) - 1)}")
        conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")   # built once, after loading
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS _stage (doc int, ordinal int, body text)")
        for first in range(1, docs + 1, BATCH_DOCS):
            last = min(docs, first + BATCH_DOCS - 1)
            conn.execute("TRUNCATE _stage")
            conn.execute(_stage_sql(first, last))
            conn.execute(LOAD_DOCUMENTS)
            conn.execute(LOAD_CHUNKS)
            say(f"loaded documents {last}/{docs} ({time.monotonic() - start:.0f}s)")
        conn.execute("DROP TABLE _stage")
        loaded = time.monotonic()
        say("building the HNSW index")
        conn.execute("CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)")
        indexed = time.monotonic()
        conn.execute("VACUUM ANALYZE documents")
        conn.execute("VACUUM ANALYZE chunks")
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        n_docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        n_chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    stats = {"seconds": round(time.monotonic() - start, 1), "load_seconds": round(loaded - start, 1),
             "index_seconds": round(indexed - loaded, 1), "db_bytes": db_bytes, "documents": n_docs,
             "chunks": n_chunks}
    say(f"dataset: {n_docs} documents, {n_chunks} chunks, {db_bytes / 1e6:.0f} MB in {stats['seconds']}s "
        f"(load {stats['load_seconds']}s, HNSW index {stats['index_seconds']}s)")
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", required=True, help="superuser conninfo of an empty database")
    parser.add_argument("--size-mb", type=int, default=1000, help="target database size (default 1000; 100 for quick runs)")
    args = parser.parse_args()
    create_dataset(args.dsn, args.size_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
