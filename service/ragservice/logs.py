"""The service's log format: one JSON object per line in the production guide's shape, or text.

    {"timestamp": "2026-12-07T10:30:00.123Z", "level": "info", "service": "rag-engine",
     "message": "Document uploaded successfully", "context": {"document_id": ..., "duration_ms": ...},
     "logger": "ragservice", "service.name": "rag-engine", "service.version": "v2",
     "deployment.environment": "production", "ragops.deploy_id": "d-...", "color": "green"}

RAG_LOG_FORMAT=json|text (default text). The OpenTelemetry log fields stand beside the guide's
(`service.name`, `service.version`, `deployment.environment`; `trace_id`/`span_id` when a span is
active). A record's `extra={...}` becomes its `context`; uvicorn's access and error logs go through
the same formatter. Every line is passed through the redactor first: the API keys and the database
password (from the environment) and any query parameter named like a key, token, password or secret
never reach a log.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from pythonjsonlogger.json import JsonFormatter

from ragservice.logredact import redact_params

STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def secret_values() -> list[str]:
    """What must never be logged: the API keys and the database password of this process."""
    values = [k.strip() for k in os.environ.get("RAG_API_KEYS", "").split(",") if k.strip()]
    url = os.environ.get("RAG_DATABASE_URL", "")
    try:
        password = urlsplit(url).password if "://" in url else None
    except ValueError:
        password = None
    match = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url) if not password else None
    if match:
        password = match.group(1).strip("'")
    if password:
        values += [password, unquote(password)]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


class Redactor(logging.Filter):
    """Masks secret values and secret-looking query parameters in the message and its arguments."""

    def __init__(self, values: list[str] | None = None):
        super().__init__()
        self.values = secret_values() if values is None else values

    def clean(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return redact_params(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):   # kept (cleaned): the access log's fields become its context
            record.msg = self.clean(str(record.msg))
            record.args = tuple(self.clean(a) if isinstance(a, str) else a for a in record.args)
        else:
            record.msg = self.clean(record.getMessage())
            record.args = None
        for key, value in list(vars(record).items()):
            if key not in STANDARD and isinstance(value, str):
                setattr(record, key, self.clean(value))
        return True


class GuideJsonFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(timestamp=False)
        self.service = os.environ.get("RAG_SERVICE_NAME", "rag-engine")
        self.resource = {"service.name": self.service, "service.version": os.environ.get("RAG_VERSION", "dev"),
                         "deployment.environment": os.environ.get("RAG_ENVIRONMENT", ""),
                         "ragops.deploy_id": os.environ.get("RAG_DEPLOY_ID", ""),
                         "color": os.environ.get("RAG_COLOR", "")}

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        context = {k: v for k, v in vars(record).items() if k not in STANDARD}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            context.update(client=client, method=method, path=path, status=status)
        moment = datetime.fromtimestamp(record.created, UTC)
        log_data.update({"timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
                         "level": record.levelname.lower(), "service": self.service,
                         "message": record.getMessage(), "context": context, "logger": record.name,
                         **{k: v for k, v in self.resource.items() if v}})
        trace = current_trace()
        if trace:
            log_data.update(trace)
        if record.exc_info:
            log_data["exception"] = self.formatException(record.exc_info)

    def process_log_record(self, log_data: dict) -> dict:
        return log_data


def current_trace() -> dict[str, str]:
    """trace_id and span_id of the active OpenTelemetry span, when tracing is installed and on."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def configure(level: str, fmt: str | None = None) -> dict:
    """Set up the root, uvicorn and uvicorn.access loggers; returns uvicorn's log_config (None keeps ours)."""
    fmt = (fmt or os.environ.get("RAG_LOG_FORMAT", "text")).strip().lower()
    if fmt not in ("json", "text"):
        raise SystemExit(f"error: RAG_LOG_FORMAT: expected json or text, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(GuideJsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Redactor())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    return {"version": 1, "disable_existing_loggers": False}
