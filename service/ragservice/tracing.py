"""OpenTelemetry traces of the service: the FastAPI request span, psycopg's spans with sqlcommenter
`traceparent` comments on every statement (so PostgreSQL's log joins a trace), and the manual spans the
guide names (auth, file_validation, storage, database_insert, queue_publish; embedding, vector_search,
ranking), exported over OTLP/HTTP.

Off unless RAG_OTEL_ENDPOINT is set (e.g. http://127.0.0.1:4318/v1/traces): then nothing of
OpenTelemetry is imported and `span()` is a shared no-op. RAG_OTEL_SAMPLE_RATIO (0..1, default 1)
samples new traces; a request that arrives with a sampled `traceparent` is always traced (parent based).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

EXCLUDED_URLS = "healthz,readyz,metrics"   # probes and scrapes: no trace
_tracer: Any = None


def enabled() -> bool:
    return _tracer is not None


def setup(app, *, version: str, color: str) -> bool:
    """Install tracing on `app` when RAG_OTEL_ENDPOINT is set; True when it was."""
    global _tracer
    endpoint = os.environ.get("RAG_OTEL_ENDPOINT", "").strip()
    if not endpoint:
        return False
    ratio = float(os.environ.get("RAG_OTEL_SAMPLE_RATIO", "1") or 1)
    if not 0 <= ratio <= 1:
        raise SystemExit(f"error: RAG_OTEL_SAMPLE_RATIO: expected 0..1, got {ratio}")
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes = {"service.name": os.environ.get("RAG_SERVICE_NAME", "rag-engine"), "service.version": version,
                  "deployment.environment": os.environ.get("RAG_ENVIRONMENT", ""), "rag.color": color,
                  "ragops.deploy_id": os.environ.get("RAG_DEPLOY_ID", "")}
    provider = TracerProvider(resource=Resource.create({k: v for k, v in attributes.items() if v}),
                              sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5),
                                                   schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(enable_commenter=True, commenter_options={"opentelemetry_values": True})
    FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS, tracer_provider=provider)
    _tracer = trace.get_tracer("ragservice")
    return True


def shutdown() -> None:
    """Flush what is buffered (a color's last spans before it stops)."""
    if _tracer is not None:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            provider.shutdown()


_NOOP = contextlib.nullcontext()


def span(name: str, **attributes: Any):
    """A child span of the current one (a no-op when tracing is off)."""
    if _tracer is None:
        return _NOOP
    return _tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})
