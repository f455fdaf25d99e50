"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks graceful streaming).

Outermost first: Observe (metrics, version and security headers, last-resort 500) -> CORS ->
Faults (injected errors and latency) -> ApiAuth (X-API-Key and per-key rate limit) -> routes.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import random
import threading
import time

from starlette.routing import Match

from ragservice import metrics, tracing

log = logging.getLogger("ragservice")

PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics")   # never slowed or failed by fault injection
SECURITY_HEADERS = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


# metric labels come only from these sets: a client must not mint new series with invented
# methods (curl -X ZZTESTA) or paths; route templates are bounded by the app's routes
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def route_template(app, scope) -> str:
    """The matching route's path template (/api/v1/documents/{id}), so labels stay bounded."""
    partial = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
        if match == Match.PARTIAL and partial is None:
            partial = route.path    # path matched, method did not (405)
    return partial or "unmatched"


def allowed_methods(app, scope) -> list[str]:
    """Every method some route serves at this path: FastAPI makes one route per method, and
    Starlette's 405 would name only the first route's (Allow: GET where DELETE works too)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


class Observe:
    def __init__(self, app, fastapi_app, version: str, color: str):
        self.app = app
        self.fastapi_app = fastapi_app
        self.version = version
        self.extra = [(b"x-rag-version", version.encode()), (b"x-rag-color", color.encode()), *SECURITY_HEADERS]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = route_template(self.fastapi_app, scope)
        counted = route != "/metrics"
        state = {"status": 500, "started": False}
        began = time.perf_counter()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), *self.extra]}
            await send(message)

        if counted:
            metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # noqa: BLE001 - answered as a one-line 500, logged with its traceback
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            state["status"] = 500
            if not state["started"]:
                await send_with_headers({"type": "http.response.start", "status": 500,
                                         "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"error": "internal error"}'})
        finally:
            if counted:
                metrics.IN_FLIGHT.dec()
            metrics.REQUESTS.labels(method_label(scope["method"]), route, str(state["status"])).inc()
            metrics.DURATION.labels(route).observe(time.perf_counter() - began)
            if route not in PUBLIC_PATHS:
                metrics.RESPONSES.labels(self.version, f"{str(state['status'])[:1]}xx").inc()


class Faults:
    """Fault injection for drills: a share of requests fail with 500, all are slowed."""

    def __init__(self, app, error_rate: float, latency_ms: float, after_s: float = 0.0):
        self.app = app
        self.error_rate = error_rate
        self.latency = latency_ms / 1000.0
        # RAG_FAULT_AFTER_S: healthy at first (passes readiness and smoke), bad after a while
        self.active_from = time.monotonic() + after_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or time.monotonic() < self.active_from:
            return await self.app(scope, receive, send)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if self.error_rate > 0 and random.random() < self.error_rate:
            return await send_json(send, 500, {"error": "injected fault (RAG_FAULT_ERROR_RATE)"})
        await self.app(scope, receive, send)


class RateLimiter:
    """A token bucket per API key: `per_minute` requests a minute, bursts up to the same."""

    def __init__(self, per_minute: float):
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 when allowed, else the seconds until a request would be."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate


class ApiAuth:
    """/api/* needs a valid X-API-Key (compared in constant time), then passes the rate limit.
    /metrics needs one too when `metrics_auth` says so: "proxied" (default) when the request came
    through a router (it carries X-Forwarded-For: Traefik and HAProxy set it), so the public address
    does not give it away while Prometheus, scraping the color's internal address, needs no key;
    "always"; or "never"."""

    def __init__(self, app, api_keys: tuple[str, ...], rate_limit_per_minute: float,
                 metrics_auth: str = "proxied"):
        self.app = app
        self.metrics_auth = metrics_auth
        self.keys = [k.encode() for k in api_keys]
        self.limiter = RateLimiter(rate_limit_per_minute)
        if not self.keys:
            log.warning("RAG_API_KEYS is empty: every /api request will be refused")

    def _key_id(self, presented: bytes) -> str | None:
        found = None
        for index, key in enumerate(self.keys):   # check every key: timing says nothing
            if hmac.compare_digest(presented, key):
                found = str(index)
        return found

    def _needs_key(self, scope) -> bool:
        path = scope["path"]
        if path.startswith("/api/"):
            return True
        if path.rstrip("/") != "/metrics" or self.metrics_auth == "never":
            return False
        return self.metrics_auth == "always" or any(k == b"x-forwarded-for" for k, _ in scope["headers"])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self._needs_key(scope):
            return await self.app(scope, receive, send)
        with tracing.span("auth"):
            presented = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
            key_id = self._key_id(presented) if presented else None
        if key_id is None:
            reason = "missing X-API-Key header" if presented is None else "invalid API key"
            return await send_json(send, 401, {"error": reason}, [(b"www-authenticate", b"ApiKey")])
        wait = self.limiter.take(key_id)
        if wait > 0:
            return await send_json(send, 429, {"error": "rate limit exceeded"},
                                   [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
        await self.app(scope, receive, send)

