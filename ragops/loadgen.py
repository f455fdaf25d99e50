"""A built-in, bounded, open-loop load generator (async httpx) for gates, tests and benchmarks.

Requests are sent at a fixed rate for a fixed time, never more than `max_in_flight` at once, and
only to the URL given (loopback in tests). Every answer is counted: status, latency and the
`X-RAG-Version` header, so a deploy test can tell which versions served traffic.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadStats:
    url: str
    target_rps: float
    duration: float = 0.0
    requests: int = 0
    failed: int = 0                       # transport errors and 5xx
    statuses: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: Counter = field(default_factory=Counter)
    timeline: list[tuple[float, str, int]] = field(default_factory=list, repr=False)  # (sent wall time, version, status)

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p95_ms(self) -> float:
        return self.percentile(0.95)

    @property
    def versions_seen(self) -> set[str]:
        return set(self.versions)

    def to_dict(self) -> dict:
        return {"url": self.url, "target_rps": self.target_rps, "duration": round(self.duration, 2),
                "requests": self.requests, "rps": round(self.rps, 1), "failed": self.failed,
                "error_rate": round(self.error_rate, 4), "p50_ms": round(self.percentile(0.5), 1),
                "p95_ms": round(self.p95_ms, 1), "p99_ms": round(self.percentile(0.99), 1),
                "statuses": dict(self.statuses), "versions": dict(self.versions), "errors": dict(self.errors)}


class LoadRunner:
    """Run load in a background thread: `with LoadRunner(url, rps=150, seconds=20) as stats: ...`."""

    MAX_SECONDS = 600

    def __init__(self, url: str, *, rps: float, seconds: float, method: str = "GET",
                 json_body: dict | None = None, headers: dict | None = None, max_in_flight: int = 64,
                 timeout: float = 10.0, keepalive: bool = True):
        if not 0 < rps <= 2000:
            raise ValueError("rps must be between 0 and 2000")
        self.url = url
        self.rps = rps
        self.seconds = min(seconds, self.MAX_SECONDS)
        self.method = method
        self.json_body = json_body
        self.headers = headers or {}
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.keepalive = keepalive
        self.stats = LoadStats(url=url, target_rps=rps)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def _run(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.max_in_flight,
                              max_keepalive_connections=self.max_in_flight if self.keepalive else 0)
        semaphore = asyncio.Semaphore(self.max_in_flight)
        start = time.monotonic()
        interval = 1.0 / self.rps
        tasks = set()

        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            async def one() -> None:
                sent, sent_wall = time.monotonic(), time.time()
                try:
                    resp = await client.request(self.method, self.url, json=self.json_body, headers=self.headers)
                    status = resp.status_code
                    version = resp.headers.get("x-rag-version", "?")
                    self.stats.statuses[status] += 1
                    self.stats.versions[version] += 1
                    if status >= 500:
                        self.stats.failed += 1
                except httpx.HTTPError as exc:
                    status, version = 0, "-"
                    self.stats.failed += 1
                    self.stats.errors[type(exc).__name__] += 1
                finally:
                    semaphore.release()
                self.stats.requests += 1
                self.stats.latencies_ms.append((time.monotonic() - sent) * 1000)
                self.stats.timeline.append((sent_wall, version, status))

            index = 0
            while not self._stop.is_set():
                due = start + index * interval
                if due - start >= self.seconds:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await semaphore.acquire()
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        self.stats.duration = time.monotonic() - start

    def run(self) -> LoadStats:
        asyncio.run(self._run())
        return self.stats

    def __enter__(self) -> LoadStats:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self.stats

    def stop(self) -> LoadStats:
        self._stop.set()
        if self._thread:
            self._thread.join(self.timeout + 5)
        return self.stats

    def __exit__(self, *exc) -> None:
        self.stop()


def run_load(url: str, rps: float, duration: float, api_key: str | None = None,
             path: str = "/api/v1/query", method: str | None = None, body: dict | None = None,
             max_in_flight: int = 64) -> LoadStats:
    """Run a bounded load against `url + path` and return its statistics."""
    headers = {"X-API-Key": api_key} if api_key else {}
    if method is None:
        method = "POST" if path.startswith("/api/v1/query") else "GET"
    if method == "POST" and body is None and path.startswith("/api/v1/query"):
        body = {"query": "how are backups verified", "top_k": 3}
    runner = LoadRunner(url.rstrip("/") + path, rps=rps, seconds=duration, method=method, json_body=body,
                        headers=headers, max_in_flight=max_in_flight)
    return runner.run()
