"""The bundled RAG service: a FastAPI API, an ingestion worker, PostgreSQL storage."""
