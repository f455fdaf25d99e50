"""monitoring.tracing: local on a real local stack: `up` runs a real Jaeger (built from the Go module
proxy by scripts/jaeger-build.sh), the colors export OpenTelemetry spans to it, and one upload and one
query through the router come back from Jaeger's API as span trees with the guide's child spans, the
color's version and deploy id; the same trace id is in the service's JSON log lines and in the SQL
comment (sqlcommenter's traceparent) PostgreSQL logged for the insert."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ragops.devstack import free_port
from tests.conftest import need
from tests.integration.conftest import run_sql, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack():
    from ragops.monitoring.tracing import binary

    need(binary() is not None, "the jaeger binary (scripts/jaeger-build.sh)")
    otlp, query = free_port(), free_port()
    while query + 1 in (otlp,):
        query = free_port()
    extra = {"monitoring": {"tracing": "local", "otlp_listen": f"127.0.0.1:{otlp}",
                            "tracing_listen": f"127.0.0.1:{query}"},
             "service": {"env": {"RAG_LOG_FORMAT": "json"}}}
    with running_stack("tracing", extra=extra) as stack:
        stack.jaeger = f"http://127.0.0.1:{query}"
        yield stack


def traces(stack, operation: str, seconds: float = 30) -> list[dict]:
    """Jaeger's traces of the service with a root span named `operation`, waiting for the batch export."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = httpx.get(f"{stack.jaeger}/api/traces", params={"service": "rag-engine", "operation": operation,
                                                                 "limit": 20}, timeout=5)
        if answer.status_code == 200 and answer.json().get("data"):
            return answer.json()["data"]
        time.sleep(0.5)
    raise AssertionError(f"no trace of {operation} in Jaeger after {seconds}s")


def tree(trace: dict) -> dict[str, set[str]]:
    """operation name -> the operation names of its children."""
    names = {s["spanID"]: s["operationName"] for s in trace["spans"]}
    children: dict[str, set[str]] = {name: set() for name in names.values()}
    for span in trace["spans"]:
        for ref in span.get("references") or []:
            if ref["refType"] == "CHILD_OF" and ref["spanID"] in names:
                children[names[ref["spanID"]]].add(span["operationName"])
    return children


def tags(trace: dict, span_name: str) -> dict:
    span = next(s for s in trace["spans"] if s["operationName"] == span_name)
    process = trace["processes"][span["processID"]]
    return {t["key"]: t["value"] for t in [*process.get("tags", []), *span.get("tags", [])]}


def test_upload_and_query_are_traced_into_jaeger_and_joined_to_logs_and_sql(stack):
    dsn = _superuser_dsn(stack)
    run_sql(dsn, "ALTER SYSTEM SET log_statement = 'mod'", "SELECT pg_reload_conf()")
    headers = {"X-API-Key": stack.api_key}
    with httpx.Client(base_url=stack.router_url, timeout=15) as client:
        created = client.post("/api/v1/documents", headers=headers,
                              json={"title": "Traced", "content": "The kakapo is a flightless parrot of New Zealand."})
        assert created.status_code == 201, created.text
        assert client.post("/api/v1/query", headers=headers, json={"query": "flightless parrot"}).status_code == 200
        assert client.get("/healthz").status_code == 200   # excluded: never traced

    upload = traces(stack, "POST /api/v1/documents")[0]
    children = tree(upload)
    root = "POST /api/v1/documents"
    assert {"auth", "file_validation", "storage"} <= children[root] | set().union(*children.values())
    assert {"database_insert"} <= children["storage"] | children.get("database_insert", set())
    assert "embedding" in set().union(*children.values())
    resource = tags(upload, root)
    status = stack.json("status")
    live = next(c for c in status["colors"] if c["weight"] > 0)
    assert resource["service.version"] == live["version"] and resource["rag.color"] == live["color"]
    assert resource["ragops.deploy_id"] and resource["ragops.deploy_id"] == live["deploy_id"]

    query = traces(stack, "POST /api/v1/query")[0]
    assert {"embedding", "vector_search", "ranking"} <= set().union(*tree(query).values())
    health = httpx.get(f"{stack.jaeger}/api/traces", params={"service": "rag-engine", "operation": "GET /healthz"})
    assert not health.json().get("data")

    trace_id = upload["traceID"]
    log = (stack.state_dir / "logs" / f"{live['color']}.log").read_text()
    assert f'"trace_id": "{trace_id.rjust(32, "0")}"' in log, "the upload's log lines carry its trace id"
    db_log = _primary_log(stack).read_text(errors="replace")
    assert f"traceparent='00-{trace_id.rjust(32, '0')}" in db_log, "the insert's SQL comment carries the trace"


def _superuser_dsn(stack) -> str:
    from ragops.config import load_config
    from ragops.db.connect import node_dsn

    config = load_config(stack.config_path, "test")
    return node_dsn(config, "primary")   # the superuser by default


def _primary_log(stack) -> Path:
    from ragops.config import load_config
    from ragops.pg.pgctl import managed_node

    return managed_node(load_config(stack.config_path, "test"), "primary").log_file
