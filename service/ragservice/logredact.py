"""Query-string values that look like credentials, masked in the access log.

Why: `POST /api/v1/query?api_key=<key>` (refused with 401) wrote the real key into the color's log.
uvicorn's access log record carries the path with its query string as an argument; this filter
masks the value of any parameter whose name looks like a key, token, password or secret before
the line is formatted. The API takes its key only in the X-API-Key header; the filter is for
clients that put one in the URL anyway.
"""
from __future__ import annotations

import logging
import re

SECRET_NAME = re.compile(r"key|token|passw|pwd|secret|auth|credential|signature|session", re.IGNORECASE)
MASK = "***"


def redact_query(target: str) -> str:
    """`/p?api_key=abc&x=1` -> `/p?api_key=***&x=1` (names kept, so a log still says what was sent)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        parts.append(f"{name}={MASK}" if eq and SECRET_NAME.search(name) else pair)
    return path + sep + "&".join(parts)


class RedactQuery(logging.Filter):
    """For uvicorn.access: its args are (client, method, path with query, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def install() -> None:
    logging.getLogger("uvicorn.access").addFilter(RedactQuery())
