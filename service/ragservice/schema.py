"""What the OpenAPI schema says about the API: bodies, error responses and the API key.

The routes parse uploads themselves (JSON or text/plain, see app._parse_document) and errors are
answered by handlers and middleware, so FastAPI cannot infer these: they are declared here.
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

# documents only: middleware.ApiAuth does the checking (auto_error=False: no second check here)
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                       description="One of the keys in RAG_API_KEYS; each key has its own rate limit.")

# PostgreSQL text cannot hold NUL (lone surrogates are refused too; JSON Schema cannot say so)
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK_NO_NUL = r"^[^\u0000]*\S[^\u0000]*$"


class ErrorOut(BaseModel):
    error: str = Field(description="One line naming what is wrong, e.g. 'content: the document is empty'.")


class DocumentIn(BaseModel):
    title: str | None = Field(None, pattern=NO_NUL, description="Default: the content's first line.")
    content: str = Field(pattern=NOT_BLANK_NO_NUL, description="The text; not only whitespace.")
    metadata: dict[str, Any] | None = Field(None, description="Any JSON object (no NUL in its strings).")


class DocumentCreated(BaseModel):
    id: str
    title: str
    chunks: int


class DocumentQueued(BaseModel):
    id: str
    status: Literal["queued"]


class Document(BaseModel):
    id: str
    title: str
    content: str
    metadata: dict[str, Any]
    status: Literal["queued", "ready", "failed"]
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    chunks: int


class Hit(BaseModel):
    document_id: str
    chunk_id: int
    content: str
    score: float


class QueryOut(BaseModel):
    query: str
    results: list[Hit]
    answer: str


class Health(BaseModel):
    status: str


class SchemaRange(BaseModel):
    """The schema versions a build serves on: its own, up to the newest one not behind a migration
    marked breaking (later migrations are expand-only, so the previous color stays ready)."""
    from_: int = Field(alias="from")
    to: int


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    reason: str
    schema_version: int | None = None
    expected_schema_version: int | None = Field(None, description="This build's own schema version.")
    accepted_schema_versions: SchemaRange | None = None


class VersionOut(BaseModel):
    version: str
    color: str
    schema_version: int | None


def error(description: str, **extra) -> dict:
    return {"model": ErrorOut, "description": description, **extra}


# every /api route: answered by middleware.ApiAuth, the database handler, or Observe's last resort
API_RESPONSES: dict[int | str, dict] = {
    401: error("Missing or invalid X-API-Key.",
               headers={"WWW-Authenticate": {"schema": {"type": "string"}, "description": "ApiKey"}}),
    429: error("This key's rate limit (RAG_RATE_LIMIT_PER_MINUTE) is exhausted.",
               headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}),
    503: error("The database is unavailable."),
    "default": error("Any other error: 500 for an internal error or an injected fault."),
}

QUERY_RESPONSES: dict[int | str, dict] = {
    400: error("The body is JSON nested deeper than 64 levels."),
    415: error("The body is not application/json."),
}

UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": DocumentIn.model_json_schema()},
    "text/plain": {"schema": {"type": "string", "pattern": NOT_BLANK_NO_NUL},
                   "example": "Liquid sodium cools the reactor core."},
}}}

UPLOAD_RESPONSES: dict[int | str, dict] = {
    201: {"model": DocumentCreated, "description": "Stored, chunked and embedded."},
    202: {"model": DocumentQueued, "description": "Stored and queued for the worker (?async=true)."},
    400: error("The body is not valid JSON, is nested deeper than 64 levels, or is not UTF-8 text."),
    413: error("The document is larger than RAG_MAX_DOCUMENT_BYTES."),
    415: error("The body is neither application/json nor text/plain."),
    422: error("A field is missing or invalid (empty content, NUL or lone surrogate, wrong type)."),
}
