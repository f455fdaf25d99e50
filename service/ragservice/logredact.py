"""Query-string values that look like credentials: what every log line masks (ragservice.logs).

Why: `POST /api/v1/query?api_key=<key>` (refused with 401) wrote the real key into the color's log.
The API takes its key only in the X-API-Key header; this is for clients that put one in the URL anyway.
"""
from __future__ import annotations

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


QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[\w.\-]+)=(?P<value>[^&;\s\"']*)")


def redact_params(text: str) -> str:
    """Every `?name=value` / `&name=value` in free text whose name looks like a credential -> `name=***`."""
    return QUERY_PARAM.sub(lambda m: f"{m['lead']}{m['name']}={MASK}" if SECRET_NAME.search(m["name"]) else m[0], text)
