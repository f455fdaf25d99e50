"""The service's HTTP layer in-process (Starlette's TestClient, no database: anything that gets
past validation answers 503, so a 422 here is the API refusing the request itself)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"
sys.path.insert(0, str(SERVICE_DIR))

KEY = "unit-test-key"


@pytest.fixture(scope="module")
def app():
    with pytest.MonkeyPatch.context() as mp:
        for name in ("RAG_DATABASE_URL", "RAG_RATE_LIMIT_PER_MINUTE", "RAG_FAULT_ERROR_RATE",
                     "RAG_FAULT_LATENCY_MS", "RAG_CORS_ORIGINS"):
            mp.delenv(name, raising=False)
        mp.setenv("RAG_API_KEYS", KEY)
        yield importlib.import_module("ragservice.app").app   # settings are read at import


@pytest.fixture
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["X-API-Key"] = KEY
        yield test_client


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}


@pytest.mark.parametrize("body, field", [
    ('{"title": "a\\u0000b", "content": "fine"}', "title"),
    ('{"content": "nul \\u0000 inside"}', "content"),
    ('{"title": "lone \\ud800", "content": "fine"}', "title"),
    ('{"content": "lone \\udfff low surrogate"}', "content"),
    ('{"content": "fine", "metadata": {"source": "x\\u0000"}}', "metadata.source"),
    ('{"content": "fine", "metadata": {"tags": ["ok", "\\ud83d"]}}', "metadata.tags[1]"),
])
@pytest.mark.parametrize("queued", ["", "?async=true"])
def test_json_upload_with_nul_or_lone_surrogate_is_422_naming_the_field(client, body, field, queued):
    response = client.post("/api/v1/documents" + queued, content=body.encode(), headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}: ")


@pytest.mark.parametrize("queued", ["", "&async=true"])
def test_text_upload_with_nul_is_422_naming_the_field(client, queued):
    in_content = client.post("/api/v1/documents?title=ok" + queued, content=b"hello\x00world", headers=TEXT)
    assert in_content.status_code == 422 and in_content.json()["error"].startswith("content: ")
    in_title = client.post("/api/v1/documents?title=a%00b" + queued, content=b"hello", headers=TEXT)
    assert in_title.status_code == 422 and in_title.json()["error"].startswith("title: ")


def test_a_valid_upload_gets_past_validation(client):
    response = client.post("/api/v1/documents", json={"title": "emoji \U0001f600", "content": "fine"})
    assert response.status_code == 503   # no database here: validation passed


def _request_series(client) -> set[tuple[str, str]]:
    from prometheus_client.parser import text_string_to_metric_families

    body = client.get("/metrics").text
    return {(s.labels["method"], s.labels["route"])
            for family in text_string_to_metric_families(body) for s in family.samples
            if s.name == "rag_http_requests_total"}


def test_invented_methods_and_paths_mint_no_metric_series(client, app):
    client.request("ZZTESTA", "/api/v1/query")
    client.request("ZZTESTB", "/nowhere/at/all")
    client.request("get", "/healthz")   # methods are case-sensitive: lower case is not GET
    client.get("/random-" + "x" * 40)
    client.get("/healthz")
    series = _request_series(client)
    methods = {method for method, _ in series}
    routes = {route for _, route in series}
    assert ("other", "/api/v1/query") in series and ("other", "unmatched") in series
    assert ("GET", "/healthz") in series
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert routes <= {route.path for route in app.router.routes} | {"unmatched"}, routes


def test_openapi_schema_describes_uploads_auth_errors_and_metrics(app):
    spec = app.openapi()
    paths = spec["paths"]
    upload = paths["/api/v1/documents"]["post"]
    body = upload["requestBody"]
    assert body["required"] is True and set(body["content"]) == {"application/json", "text/plain"}
    json_body = body["content"]["application/json"]["schema"]
    assert json_body["required"] == ["content"] and set(json_body["properties"]) == {"title", "content", "metadata"}
    assert {p["name"] for p in upload["parameters"]} == {"title", "async"}
    assert {"201", "202", "400", "413", "422"} <= set(upload["responses"])

    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": spec["components"]["securitySchemes"]["APIKeyHeader"]["description"]}
    api_operations = [(path, method, op) for path, ops in paths.items() if path.startswith("/api/")
                      for method, op in ops.items()]
    assert len(api_operations) == 4
    for path, method, op in api_operations:
        assert op["security"] == [{"APIKeyHeader": []}], (path, method)
        assert {"401", "429", "503"} <= set(op["responses"]), (path, method)
        assert "429" in op["responses"] and "Retry-After" in op["responses"]["429"]["headers"]
    for method in ("get", "delete"):
        assert "404" in paths["/api/v1/documents/{id}"][method]["responses"]
    public = [op for path, ops in paths.items() if not path.startswith("/api/") for op in ops.values()]
    assert all("security" not in op for op in public)

    # every error body is {"error": "..."}, never FastAPI's {"detail": [...]} it does not send
    error_refs = {content["schema"].get("$ref") for ops in paths.values() for op in ops.values()
                  for status, response in op["responses"].items() if status[0] in "45d"
                  for content in response.get("content", {}).values()}
    assert error_refs <= {"#/components/schemas/ErrorOut", "#/components/schemas/Readiness"}, error_refs
    assert "HTTPValidationError" not in spec["components"]["schemas"]

    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}


def test_metrics_is_served_as_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")


def test_what_the_schema_promises_is_enforced(client):
    """Found by schemathesis: 405 named only one route's methods, and values of the wrong type
    for `async` and `metadata` were silently taken as false / {}."""
    not_allowed = client.put("/api/v1/documents/00000000-0000-0000-0000-000000000000")
    assert not_allowed.status_code == 405
    assert {m.strip() for m in not_allowed.headers["allow"].split(",")} >= {"GET", "DELETE"}
    maybe = client.post("/api/v1/documents?async=maybe", json={"content": "fine"})
    assert maybe.status_code == 422 and maybe.json()["error"].startswith("query.async: ")
    for wrong in (False, [], 0, ""):
        response = client.post("/api/v1/documents", json={"content": "fine", "metadata": wrong})
        assert response.status_code == 422 and response.json()["error"].startswith("metadata: "), wrong


def test_json_nested_100000_deep_is_400_not_500(client):
    """Issue 24 point 11: json.loads recursed until RecursionError (500) on deep metadata."""
    deep = b'{"content": "fine", "metadata": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    for path in ("/api/v1/documents", "/api/v1/query"):
        response = client.post(path, content=deep, headers=JSON)
        assert response.status_code == 400, (path, response.text)
        assert "nested deeper than 64 levels" in response.json()["error"]
    # brackets inside strings are text, not nesting
    fine = client.post("/api/v1/query", json={"query": "[" * 200})
    assert fine.status_code in (200, 503), fine.text   # past the guard (503: no database in this test)


@pytest.mark.parametrize(("path", "media"), [
    ("/api/v1/documents", "application/xml"), ("/api/v1/documents", "application/x-www-form-urlencoded"),
    ("/api/v1/documents", ""), ("/api/v1/query", "text/plain"), ("/api/v1/query", "application/xml"),
])
def test_a_body_of_a_type_the_route_does_not_take_is_415(client, path, media):
    response = client.post(path, content=b"<doc>Liquid sodium cools the reactor core.</doc>",
                           headers={"Content-Type": media} if media else {})
    assert response.status_code == 415, response.text
    assert "is not accepted here" in response.json()["error"]


def test_unparseable_bodies_are_4xx(client):
    for path in ("/api/v1/documents", "/api/v1/query"):
        for raw in (b"{", b"\xff\xfe{}", b'{"query": "x"' + b"}" * 10, b"null", b"[]"):
            response = client.post(path, content=raw, headers=JSON)
            assert 400 <= response.status_code < 500, (path, raw, response.status_code, response.text)
    unauthenticated = client.post("/api/v1/query", content=b"<x/>", headers={"Content-Type": "text/xml",
                                                                              "X-API-Key": "wrong"})
    assert unauthenticated.status_code == 401   # the key is checked before the body
