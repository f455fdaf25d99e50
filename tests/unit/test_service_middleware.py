"""The service's rate limiter and route labelling (pure logic, no server)."""
from __future__ import annotations

import sys
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"
sys.path.insert(0, str(SERVICE_DIR))

from ragservice import middleware  # noqa: E402


def test_rate_limiter_allows_the_budget_then_says_how_long_to_wait(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(middleware.time, "monotonic", lambda: now[0])
    limiter = middleware.RateLimiter(per_minute=60)   # one token a second
    assert all(limiter.take("k") == 0 for _ in range(60))
    wait = limiter.take("k")
    assert 0.9 < wait <= 1.0
    assert limiter.take("other") == 0           # buckets are per key
    now[0] += 1.0
    assert limiter.take("k") == 0


def test_rate_limit_zero_disables_it():
    limiter = middleware.RateLimiter(per_minute=0)
    assert all(limiter.take("k") == 0 for _ in range(1000))


def test_route_template_labels():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/api/v1/documents/{id}")
    def get(id: str):
        return {}

    def scope(method, path):
        return {"type": "http", "method": method, "path": path, "root_path": ""}

    assert middleware.route_template(app, scope("GET", "/api/v1/documents/123")) == "/api/v1/documents/{id}"
    assert middleware.route_template(app, scope("PUT", "/api/v1/documents/123")) == "/api/v1/documents/{id}"
    assert middleware.route_template(app, scope("GET", "/random/path")) == "unmatched"


def test_method_label_is_bounded():
    assert [middleware.method_label(m) for m in ("GET", "POST", "DELETE", "OPTIONS")] == ["GET", "POST", "DELETE",
                                                                                         "OPTIONS"]
    assert {middleware.method_label(m) for m in ("ZZTESTA", "get", "PROPFIND", "")} == {"other"}
