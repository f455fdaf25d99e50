"""Prometheus metrics (prometheus-client's default registry, so process metrics come along)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("rag_http_requests_total", "HTTP requests served", ["method", "route", "status"])
DURATION = Histogram("rag_http_request_duration_seconds", "HTTP request duration", ["route"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# the deployer waits for this to reach 0 before stopping a color (/metrics itself excluded)
IN_FLIGHT = Gauge("rag_http_requests_in_flight", "HTTP requests being served right now")
BUILD_INFO = Gauge("rag_build_info", "The running build", ["version", "color"])
DOCUMENTS_INGESTED = Counter("rag_documents_ingested_total", "Documents stored", ["mode"])
