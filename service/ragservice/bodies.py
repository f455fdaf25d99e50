"""Request bodies the routes can parse, checked before they are parsed (pure ASGI middleware).

Why: a JSON body nested 100,000 deep reached json.loads and ended in a RecursionError (500), and
an application/xml upload was stored as a text document (201). Here a route that takes a body
accepts only its declared media types (415 otherwise) and a JSON body nested deeper than
MAX_JSON_DEPTH is refused with 400 before any parser recurses into it.
"""
from __future__ import annotations

import re

from ragservice.middleware import send_json

MAX_JSON_DEPTH = 64
# (method, path) -> the media types its body may have (schema.UPLOAD_BODY, QueryIn)
BODY_TYPES = {
    ("POST", "/api/v1/documents"): ("application/json", "text/plain"),
    ("POST", "/api/v1/query"): ("application/json",),
}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of objects/arrays in a JSON text (strings skipped; no recursion)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b"", raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class BodyGuard:
    """415 for a media type the route does not take; 400 for JSON nested too deep."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        allowed = BODY_TYPES.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if allowed is None:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if media not in allowed:
            return await send_json(send, 415, {"error": f"content-type {media or '(none)'!r} is not accepted here; "
                                                        f"send {' or '.join(allowed)}"})
        if media != "application/json":
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)   # disconnected: the app sees it
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await send_json(send, 413, {"error": f"body larger than {self.max_bytes} bytes"})
        raw = b"".join(chunks)
        if json_depth(raw) > MAX_JSON_DEPTH:
            return await send_json(send, 400, {"error": f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels"})
        await self.app(scope, _replay([{"type": "http.request", "body": raw, "more_body": False}], receive), send)


def _replay(messages: list[dict], original):
    """A receive() that hands the buffered body to the app, then waits on the original (a disconnect)."""
    pending = list(messages)

    async def replay():
        if pending:
            return pending.pop(0)
        return await original()
    return replay
