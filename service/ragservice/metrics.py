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

# The deploy gates read these (ragops/deploy/analysis): one set of series per process, labelled with
# its version and created at 0 at start-up, so a counter that restarts with a new version has its
# whole growth inside Prometheus' range (a series born with value 3 loses those 3 to increase()).
RESPONSES = Counter("rag_http_responses_total", "User-traffic answers (not /metrics, /healthz, /readyz)",
                    ["version", "class"])
RESPONSE_CLASSES = ("2xx", "3xx", "4xx", "5xx")
# retrieval quality per version: a version that answers 200 with wrong or no documents shows here
RETRIEVAL_QUERIES = Counter("rag_retrieval_queries_total", "Queries answered, by whether anything was found",
                            ["version", "outcome"])
RETRIEVAL_OUTCOMES = ("results", "empty")
RETRIEVAL_TOP_SCORE = Histogram("rag_retrieval_top_score", "Similarity of the best result of each query",
                                ["version"], buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
RETRIEVAL_RESULTS = Histogram("rag_retrieval_results", "Results returned per query", ["version"],
                              buckets=(0, 1, 2, 3, 5, 10, 20, 50))


def start(version: str, color: str) -> None:
    """Create every gate series at 0 for this process's version."""
    BUILD_INFO.labels(version, color).set(1)
    for klass in RESPONSE_CLASSES:
        RESPONSES.labels(version, klass)
    for outcome in RETRIEVAL_OUTCOMES:
        RETRIEVAL_QUERIES.labels(version, outcome)
    RETRIEVAL_TOP_SCORE.labels(version)
    RETRIEVAL_RESULTS.labels(version)


def observe_retrieval(version: str, results: list[dict]) -> None:
    RETRIEVAL_QUERIES.labels(version, "results" if results else "empty").inc()
    RETRIEVAL_RESULTS.labels(version).observe(len(results))
    if results:
        RETRIEVAL_TOP_SCORE.labels(version).observe(max(float(r.get("score") or 0.0) for r in results))
