"""The HTTP API. Database work is blocking psycopg, run in Starlette's thread pool."""
from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from ragservice import db, faults, metrics, schema, text, tracing
from ragservice.bodies import BodyGuard
from ragservice.config import Settings
from ragservice.middleware import ApiAuth, Faults, Observe, allowed_methods
from ragservice.queue_metrics import QUEUE
from ragservice.ready import ReadinessCheck

log = logging.getLogger("ragservice")
settings = Settings.from_env()
pool = db.Pool(settings.database_url, size=settings.pool_size, retry_seconds=settings.db_retry_seconds)
EXPECTED_SCHEMA = db.latest_migration(settings.migrations_dir)
# readiness has its own connection and thread: a busy request pool must not fail the router's probe
readiness_pool = db.Pool(settings.database_url, size=1)
readiness = ReadinessCheck(lambda: db.readiness(readiness_pool, EXPECTED_SCHEMA), EXPECTED_SCHEMA)


@asynccontextmanager
async def lifespan(_app):
    metrics.start(settings.version, settings.color)
    log.info("ragservice %s (%s) starting; expects schema version %s",
             settings.version, settings.color, EXPECTED_SCHEMA)
    QUEUE.start(settings.database_url)
    yield
    QUEUE.stop()
    tracing.shutdown()
    readiness.close()
    readiness_pool.close()
    pool.close()


app = FastAPI(title="ragservice", version=settings.version, lifespan=lifespan,
              docs_url=None, redoc_url=None)   # no docs UI: the CSP forbids its scripts anyway

# add_middleware prepends: the last one added is the outermost
app.add_middleware(BodyGuard, max_bytes=settings.max_document_bytes)   # after the key check: 401 before 415
app.add_middleware(ApiAuth, api_keys=settings.api_keys, rate_limit_per_minute=settings.rate_limit_per_minute,
                   metrics_auth=settings.metrics_auth)
app.add_middleware(Faults, error_rate=settings.fault_error_rate, latency_ms=settings.fault_latency_ms,
                   after_s=settings.fault_after_s)
if settings.cors_origins:
    app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                       allow_methods=["GET", "POST", "DELETE"], allow_headers=["X-API-Key", "Content-Type"],
                       expose_headers=["X-RAG-Version", "X-RAG-Color", "Retry-After"], max_age=600)
app.add_middleware(Observe, fastapi_app=app, version=settings.version, color=settings.color)
tracing.setup(app, version=settings.version, color=settings.color)   # RAG_OTEL_ENDPOINT unset: off, free


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@app.exception_handler(db.DatabaseUnavailable)
async def database_unavailable(_request, exc):
    return error(503, f"database unavailable: {exc}")


@app.exception_handler(HTTPException)
async def http_error(request, exc):
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request.scope))}
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)


@app.exception_handler(RequestValidationError)
async def invalid_request(_request, exc):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}")


# --- public endpoints --------------------------------------------------------------------------

@app.get("/healthz", response_model=None, responses={200: {"model": schema.Health}})
async def healthz():
    return {"status": "ok"}


@app.get("/readyz", response_model=None, responses={
    200: {"model": schema.Readiness},
    503: {"model": schema.Readiness, "description": "Not ready: the reason says why."}})
async def readyz():
    if settings.fault_readiness_fail:
        return JSONResponse({"status": "not ready", "reason": "fault injection: RAG_FAULT_READINESS_FAIL=1"},
                            status_code=503)
    ready, reason, version, newest = await readiness.result()
    body = {"status": "ready" if ready else "not ready", "reason": reason,
            "schema_version": version, "expected_schema_version": EXPECTED_SCHEMA,
            "accepted_schema_versions": {"from": EXPECTED_SCHEMA, "to": newest}}
    return JSONResponse(body, status_code=200 if ready else 503)


_schema_cache = {"value": None, "at": float("-inf")}
SCHEMA_CACHE_SECONDS = 2.0   # load tests poll /version hard; the schema changes rarely


@app.get("/version", response_model=None, responses={200: {"model": schema.VersionOut}})
async def version():
    def current_schema():
        if time.monotonic() - _schema_cache["at"] < SCHEMA_CACHE_SECONDS:
            return _schema_cache["value"]
        try:
            with pool.connection() as conn:
                value = db.schema_version(conn)
        except Exception:  # noqa: BLE001 - the version endpoint must answer without a database
            value = None
        _schema_cache.update(value=value, at=time.monotonic())
        return value

    return {"version": settings.version, "color": settings.color,
            "schema_version": await run_in_threadpool(current_schema)}


@app.get("/metrics", response_class=PlainTextResponse,
         responses={200: {"description": "Prometheus text exposition format."},
                    401: schema.error("Reached through a router without X-API-Key (RAG_METRICS_AUTH).")})
async def prometheus_metrics():
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# --- the API (X-API-Key required, see middleware.ApiAuth) --------------------------------------

# the key scheme and the errors every /api route can answer, for the OpenAPI schema (not an
# APIRouter: FastAPI's included routers hide their routes from middleware.route_template)
API_KEY = [Security(schema.API_KEY)]


class QueryIn(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(5, ge=1, le=50)


def _storable(field: str, value) -> None:
    """PostgreSQL text and jsonb cannot hold NUL, and UTF-8 cannot encode a lone surrogate (JSON's
    "\\ud800"): refuse such values up front with 422 naming the field, not a 500 from the insert."""
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(field, key)
            _storable(f"{field}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(f"{field}[{index}]", item)
    elif isinstance(value, str):
        if "\x00" in value:
            raise HTTPException(422, f"{field}: contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPException(422, f"{field}: contains an unpaired surrogate (not valid Unicode)") from None


def _parse_document(raw: bytes, content_type: str, title_param: str | None) -> tuple[str, str, dict]:
    """(title, content, metadata) from a JSON or plain-text body; HTTPException when invalid."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, 'expected a JSON object {"title", "content", "metadata"}')
        content, title, metadata = body.get("content"), body.get("title"), body.get("metadata")
        metadata = {} if metadata is None else metadata   # not `or {}`: false or [] is a wrong type
        if not isinstance(content, str):
            raise HTTPException(422, "content: expected a string")
        if title is not None and not isinstance(title, str):
            raise HTTPException(422, "title: expected a string")
        if not isinstance(metadata, dict):
            raise HTTPException(422, "metadata: expected an object")
    else:
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, "body is not UTF-8 text") from None
        title, metadata = title_param, {}
    _storable("title", title)
    _storable("content", content)
    _storable("metadata", metadata)
    if not content.strip():
        raise HTTPException(422, "content: the document is empty")
    if not title:
        # untitled: its first line, shortened
        title = content.strip().splitlines()[0][:80]
    return title, content, metadata


def _document_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HTTPException(404, "document not found") from None


@app.post("/api/v1/documents", status_code=201, response_model=None, dependencies=API_KEY,
          responses={**schema.API_RESPONSES, **schema.UPLOAD_RESPONSES}, openapi_extra=schema.UPLOAD_BODY)
async def create_document(
        request: Request,
        title: str | None = Query(None, description="The title of a text/plain upload (JSON bodies carry theirs)."),
        queued: bool = Query(False, alias="async",
                             description="Queue the document for the worker (202) instead of embedding it now.")):
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_document_bytes:
        raise HTTPException(413, f"document larger than {settings.max_document_bytes} bytes")
    raw = await request.body()
    if len(raw) > settings.max_document_bytes:
        raise HTTPException(413, f"document larger than {settings.max_document_bytes} bytes")
    with tracing.span("file_validation", size_bytes=len(raw)):
        doc_title, content, metadata = _parse_document(raw, request.headers.get("content-type", ""), title)
    with tracing.span("storage", queued=queued):
        created = await run_in_threadpool(db.create_document, pool, doc_title, content, metadata, queued)
    metrics.DOCUMENTS_INGESTED.labels("async" if queued else "sync").inc()
    if queued:
        return JSONResponse({"id": created["id"], "status": "queued"}, status_code=202)
    return created


@app.get("/api/v1/documents/{id}", response_model=None, dependencies=API_KEY, responses={
    **schema.API_RESPONSES, 200: {"model": schema.Document}, 404: schema.error("No such document.")})
async def get_document(id: str):  # noqa: A002 - the route template names it {id}
    document = await run_in_threadpool(db.get_document, pool, _document_id(id))
    if document is None:
        raise HTTPException(404, "document not found")
    return document


@app.delete("/api/v1/documents/{id}", status_code=204, response_model=None, dependencies=API_KEY,
            responses={**schema.API_RESPONSES, 404: schema.error("No such document.")})
async def delete_document(id: str):  # noqa: A002
    if not await run_in_threadpool(db.delete_document, pool, _document_id(id)):
        raise HTTPException(404, "document not found")
    return Response(status_code=204)


@app.post("/api/v1/query", response_model=None, dependencies=API_KEY, responses={
    **schema.API_RESPONSES, **schema.QUERY_RESPONSES, 200: {"model": schema.QueryOut},
    422: schema.error("query or top_k invalid.")})
async def query(body: QueryIn):
    results = await run_in_threadpool(db.search, pool, body.query, body.top_k)
    if settings.fault_retrieval:
        results = await run_in_threadpool(faults.retrieval, settings, results, lambda k: db.random_chunks(pool, k))
    metrics.observe_retrieval(settings.version, results)
    with tracing.span("ranking", results=len(results)):
        answer = text.answer(body.query, [r["content"] for r in results if r["score"] > 0])
    return {"query": body.query, "results": results, "answer": answer}
