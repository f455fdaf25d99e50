"""The service's log lines: the guide's JSON shape with the OpenTelemetry resource fields, uvicorn's
access log through the same formatter, and no planted secret in any line (RAG_LOG_FORMAT=json|text)."""
from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"
sys.path.insert(0, str(SERVICE_DIR))

from ragservice import logs  # noqa: E402

KEY = "rk-planted-api-key-0123456789"
PASSWORD = "planted pass'word"


@pytest.fixture
def capture(monkeypatch):
    monkeypatch.setenv("RAG_API_KEYS", f"other-key-abcdef,{KEY}")
    monkeypatch.setenv("RAG_DATABASE_URL", f"postgresql://rag:{PASSWORD.replace(' ', '%20')}@127.0.0.1:5432/rag")
    monkeypatch.setenv("RAG_VERSION", "v7")
    monkeypatch.setenv("RAG_ENVIRONMENT", "production")
    monkeypatch.setenv("RAG_DEPLOY_ID", "d-20261207-103000-abc123")
    monkeypatch.setenv("RAG_COLOR", "green")
    stream = io.StringIO()

    def configure(fmt: str) -> io.StringIO:
        logs.configure("info", fmt)
        logging.getLogger().handlers[0].stream = stream
        return stream
    yield configure
    logging.getLogger().handlers[:] = []


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_the_guide_shape_and_the_resource_fields(capture):
    stream = capture("json")
    logging.getLogger("ragservice").info("Document uploaded successfully",
                                         extra={"document_id": "doc-1", "size_bytes": 120, "duration_ms": 12.5})
    record = lines(stream)[0]
    assert record["message"] == "Document uploaded successfully" and record["level"] == "info"
    assert record["service"] == "rag-engine" and record["timestamp"].endswith("Z")
    assert record["context"] == {"document_id": "doc-1", "size_bytes": 120, "duration_ms": 12.5}
    assert record["service.version"] == "v7" and record["deployment.environment"] == "production"
    assert record["ragops.deploy_id"] == "d-20261207-103000-abc123" and record["color"] == "green"


def test_uvicorn_access_lines_go_through_the_same_formatter(capture):
    stream = capture("json")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200)
    record = lines(stream)[0]
    assert record["logger"] == "uvicorn.access"
    assert record["context"] == {"client": "127.0.0.1:5000", "method": "GET", "path": "/healthz", "status": 200}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_planted_secrets_never_reach_a_line(capture, fmt):
    stream = capture(fmt)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST",
                                             f"/api/v1/query?api_key={KEY}&top_k=3", "1.1", 401)
    logging.getLogger("ragservice").warning("database said: password %s rejected for %s", PASSWORD, KEY)
    logging.getLogger("ragservice").info("retry", extra={"dsn": f"postgresql://rag:{PASSWORD}@db/rag",
                                                         "token_url": "https://x/cb?access_token=abcdefgh123"})
    text = stream.getvalue()
    assert KEY not in text and PASSWORD not in text and "abcdefgh123" not in text
    assert "top_k=3" in text and "***" in text


def test_unknown_format_is_refused():
    with pytest.raises(SystemExit, match="RAG_LOG_FORMAT: expected json or text"):
        logs.configure("info", "yaml")
