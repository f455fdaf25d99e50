"""Small HTTP GETs to plain-http addresses ragops runs itself (a router's API, a color's own port).

The standard library's http.client, not httpx: the rollback path makes a handful of these calls and
measured (2 cores, loaded) importing httpx/httpcore cost 0.13-0.65 s and every httpx.Client another
0.02-0.4 s, loading the CA bundle for a TLS context no loopback call uses. https URLs (a kubernetes
color behind TLS) still go through httpx, which verifies certificates.
"""
from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


class HttpError(OSError):
    """No answer: refused, reset, timed out, or not HTTP."""


class Answer:
    def __init__(self, status: int, body: bytes):
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """Keeps one connection per host:port for repeated polls (a confirm loop)."""

    def __init__(self, timeout: float = 1.0):
        self.timeout = timeout
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def get(self, url: str) -> Answer:
        parts = urlsplit(url)
        if parts.scheme != "http":
            return _via_httpx(url, self.timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):   # a kept-alive connection the server closed meanwhile: once more, fresh
            conn = self._conns.get(parts.netloc)
            fresh = conn is None
            if conn is None:
                conn = self._conns[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            try:
                conn.request("GET", path, headers={"Connection": "keep-alive"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.will_close:
                    self._drop(parts.netloc)
                return Answer(resp.status, body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(parts.netloc)
                if fresh or attempt == 2:
                    raise HttpError(f"{url}: {type(exc).__name__}: {exc}") from None
        raise HttpError(url)   # not reached

    def _drop(self, netloc: str) -> None:
        conn = self._conns.pop(netloc, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for netloc in list(self._conns):
            self._drop(netloc)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(url: str, timeout: float = 1.0) -> Answer:
    """One GET; raises HttpError when nothing answers."""
    with Client(timeout) as client:
        return client.get(url)


def _via_httpx(url: str, timeout: float) -> Answer:
    import httpx

    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise HttpError(f"{url}: {type(exc).__name__}: {exc}") from None
    return Answer(resp.status_code, resp.content)
