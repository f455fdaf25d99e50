-- Documents, their embedded chunks, and the ingest queue the worker consumes.
-- Safe to re-run: every object is created only when missing. chunks.embedding is a pgvector
-- column when the `vector` extension is installed (the migration runner creates it as superuser),
-- else a portable real[] scored in SQL.

CREATE TABLE IF NOT EXISTS documents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title       text NOT NULL,
    content     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    status      text NOT NULL DEFAULT 'ready' CHECK (status IN ('queued', 'ready', 'failed')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF to_regclass('chunks') IS NULL THEN
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
            CREATE TABLE chunks (
                id           bigserial PRIMARY KEY,
                document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
                ordinal      int NOT NULL,
                content      text NOT NULL,
                embedding    vector(256) NOT NULL,
                UNIQUE (document_id, ordinal)
            );
            CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);
        ELSE
            CREATE TABLE chunks (
                id           bigserial PRIMARY KEY,
                document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
                ordinal      int NOT NULL,
                content      text NOT NULL,
                embedding    real[] NOT NULL,
                UNIQUE (document_id, ordinal)
            );
        END IF;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS ingest_jobs (
    id           bigserial PRIMARY KEY,
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    attempts     int NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- the worker's claim query only ever looks at queued jobs
CREATE INDEX IF NOT EXISTS ingest_jobs_queued ON ingest_jobs (id) WHERE status = 'queued';
