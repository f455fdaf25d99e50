"""The `builtin` metric provider: analysis of one color from its own Prometheus /metrics.

Two scrapes bracket a window; the deltas give the request count, the 5xx share and the p95
latency (interpolated in the histogram). Light synthetic probes go to the color during the
window so an idle environment still produces data. "No data" is never a pass: the window is
retried, then the analysis fails as inconclusive.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

IGNORED_ROUTES = {"/metrics", "/healthz", "/readyz"}
REQUESTS = "rag_http_requests"                       # counter family name (…_total samples)
DURATION = "rag_http_request_duration_seconds"
IN_FLIGHT = "rag_http_requests_in_flight"
RETRIEVAL = "rag_retrieval_queries"                  # counter family: outcome results | empty
STABLE_MARGIN = 0.1      # a canary's empty share may exceed the stable color's by this much


@dataclass
class Snapshot:
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)   # le -> cumulative count
    in_flight: float = 0.0
    queries: float = 0.0                # /api/v1/query answers (rag_retrieval_queries_total)
    empty: float = 0.0                  # of which found nothing


@dataclass
class AnalysisResult:
    color: str
    passed: bool
    inconclusive: bool = False
    requests: int = 0
    error_rate: float | None = None
    p95_ms: float | None = None
    window_s: float = 0.0
    attempts: int = 1
    breaches: list[str] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)   # the prometheus provider: one entry per metric
    queries: int = 0                    # retrieval: queries answered in the window
    empty_rate: float | None = None     # retrieval: share of them that found nothing
    stable_empty_rate: float | None = None

    def summary(self) -> dict:
        extra: dict = {"metrics": self.metrics} if self.metrics else {}
        if self.empty_rate is not None:
            extra.update(queries=self.queries, empty_rate=round(self.empty_rate, 4),
                         stable_empty_rate=None if self.stable_empty_rate is None else round(self.stable_empty_rate, 4))
        return {**extra, "requests": self.requests,
                "error_rate": None if self.error_rate is None else round(self.error_rate, 4),
                "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 1),
                "window_s": round(self.window_s, 1), "passed": self.passed,
                "inconclusive": self.inconclusive, "breaches": self.breaches}


def parse_metrics(text: str) -> Snapshot:
    from prometheus_client.parser import text_string_to_metric_families

    snap = Snapshot()
    buckets: dict[float, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if route in IGNORED_ROUTES:
                continue
            if sample.name == REQUESTS + "_total":
                snap.requests += sample.value
                if str(sample.labels.get("status", "")).startswith("5"):
                    snap.errors += sample.value
            elif sample.name == DURATION + "_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == IN_FLIGHT:
                snap.in_flight += sample.value
            elif sample.name == RETRIEVAL + "_total":
                snap.queries += sample.value
                if sample.labels.get("outcome") == "empty":
                    snap.empty += sample.value
    snap.buckets = dict(buckets)
    return snap


def scrape(url: str, timeout: float = 2.0) -> Snapshot | None:
    import httpx

    try:
        resp = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    return parse_metrics(resp.text)


def p95_from_buckets(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The 95th percentile (ms) of the observations between two cumulative histograms."""
    bounds = sorted(after)
    delta = [(le, after[le] - before.get(le, 0.0)) for le in bounds]
    if not delta or delta[-1][1] <= 0:
        return None
    target = 0.95 * delta[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in delta:
        if count >= target:
            if le == float("inf"):
                return prev_le * 1000  # above the largest finite bucket: report its bound
            span = count - prev_count
            fraction = (target - prev_count) / span if span > 0 else 1.0
            return (prev_le + (le - prev_le) * fraction) * 1000
        prev_le, prev_count = le, count
    return None


def probe_load(url: str, stop: threading.Event, rps: float) -> None:
    """Light synthetic traffic straight to the color, so an idle environment has data."""
    import httpx

    with httpx.Client(timeout=2.0) as client:
        while not stop.wait(1.0 / rps):
            try:
                client.get(url.rstrip("/") + "/version")
            except httpx.HTTPError:
                pass


def analyze(color: str, url: str, *, window: float, max_error_rate: float, max_p95_ms: float,
            min_requests: int, no_data_retries: int, probe_rps: float = 5.0,
            interval: float = 2.0, on_sample=None, should_stop=None, max_empty_rate: float | None = None,
            stable_url: str | None = None) -> AnalysisResult:
    """Watch `color` for `window` seconds; breach as soon as a threshold is crossed with data.
    Retrieval (max_empty_rate): judged once the window holds min_requests queries, against the
    stable color's own share (stable_url, its process lifetime) when it has one."""
    stable = retrieval_share(scrape(stable_url)) if stable_url and max_empty_rate is not None else None
    attempts = 0
    while True:
        attempts += 1
        stop = threading.Event()
        prober = threading.Thread(target=probe_load, args=(url, stop, probe_rps), daemon=True) if probe_rps > 0 else None
        before = scrape(url)
        start = time.monotonic()
        if prober:
            prober.start()
        result = AnalysisResult(color=color, passed=False, attempts=attempts)
        previous, last_elapsed = before, 0.0
        last_moved = 0.0       # when the request counter last went up (probes keep it moving)
        after = seen = before
        try:
            while True:
                elapsed = time.monotonic() - start
                time.sleep(max(0.0, min(interval, window - elapsed)))
                after = scrape(url)
                elapsed = time.monotonic() - start
                if after is not None:
                    if seen is not None and after.requests > seen.requests:
                        last_moved = elapsed
                    seen = after
                if before is not None and after is not None:
                    result.requests = int(after.requests - before.requests)
                    if result.requests > 0:
                        result.error_rate = (after.errors - before.errors) / result.requests
                        result.p95_ms = p95_from_buckets(before.buckets, after.buckets)
                    result.queries = int(after.queries - before.queries)
                    if max_empty_rate is not None and result.queries > 0:
                        result.empty_rate = (after.empty - before.empty) / result.queries
                        result.stable_empty_rate = stable
                result.window_s = elapsed
                if on_sample:
                    on_sample(result)
                if result.requests >= max(min_requests, 1):
                    result.breaches = _breaches(result, max_error_rate, max_p95_ms)
                    if max_empty_rate is not None and result.queries >= max(min_requests, 1):
                        result.breaches += _retrieval_breach(result, max_empty_rate)
                    # the latest interval on its own too: a version that starts failing late in
                    # the window must not hide behind its healthy first seconds
                    latest = _interval(color, previous, after)
                    if not result.breaches and latest and latest.requests >= max(min_requests, 1):
                        result.breaches = [f"{b} in the last {elapsed - last_elapsed:.0f}s"
                                           for b in _breaches(latest, max_error_rate, max_p95_ms)]
                    if result.breaches:
                        return result   # fail fast: every second on a bad version costs users
                previous, last_elapsed = after, elapsed
                if elapsed >= window or (should_stop and should_stop()):
                    break
        finally:
            stop.set()
        silent = _silent(after, probe_rps, interval, result.window_s - last_moved)
        if silent and before is not None:
            # the numbers so far are from a color that no longer answers (stopped, killed, frozen):
            # they say nothing about the end of the window, so there is no verdict
            result.inconclusive, result.passed = True, False
            result.breaches = [f"no verdict: {color} {silent} (inconclusive is not a pass)"]
            return result
        if before is None or result.requests < max(min_requests, 1):
            if attempts > no_data_retries:
                result.inconclusive = True
                why = "metrics not reachable" if before is None else \
                    f"{result.requests} requests in {result.window_s:.0f}s, need {max(min_requests, 1)}"
                result.breaches = [f"no data: {why} after {attempts} windows (inconclusive is not a pass)"]
                return result
            continue
        result.passed = not result.breaches
        return result


def _silent(last: Snapshot | None, probe_rps: float, interval: float, still_for: float) -> str | None:
    """Why the color's own numbers cannot be trusted at the end of the window, or None."""
    if last is None:
        return "stopped answering /metrics before the window ended"
    # with probes running the counter moves every 1/probe_rps s; flat for three intervals (at
    # least 2 s and five probes: a slow answer under load is not a dead color) means no answer
    if probe_rps > 0 and still_for > max(3 * interval, 2.0, 5 / probe_rps):
        return f"counted no request in the last {still_for:.0f}s while probed at {probe_rps:g}/s"
    return None


def _interval(color: str, before: Snapshot | None, after: Snapshot | None) -> AnalysisResult | None:
    """The error rate and p95 between two consecutive scrapes."""
    if before is None or after is None:
        return None
    requests = int(after.requests - before.requests)
    if requests <= 0:
        return None
    return AnalysisResult(color=color, passed=False, requests=requests,
                          error_rate=(after.errors - before.errors) / requests,
                          p95_ms=p95_from_buckets(before.buckets, after.buckets))


def retrieval_share(snap: Snapshot | None) -> float | None:
    """The share of queries that found nothing over a process's life (None: no query yet)."""
    if snap is None or snap.queries <= 0:
        return None
    return snap.empty / snap.queries


def _retrieval_breach(result: AnalysisResult, max_empty_rate: float) -> list[str]:
    """A version that answers 200 with no documents: above the limit, and worse than stable."""
    rate, stable = result.empty_rate, result.stable_empty_rate
    if rate is None or rate <= max_empty_rate:
        return []
    if stable is not None and rate <= stable + STABLE_MARGIN:
        return []     # the stable version finds as little: the corpus, not this version
    versus = f" (stable {stable:.1%})" if stable is not None else ""
    return [f"empty_results {rate:.1%} of {result.queries} queries > max_empty_results_rate {max_empty_rate:.1%}{versus}"]


def _breaches(result: AnalysisResult, max_error_rate: float, max_p95_ms: float) -> list[str]:
    found = []
    if result.error_rate is not None and result.error_rate > max_error_rate:
        found.append(f"error_rate {result.error_rate:.1%} > max_error_rate {max_error_rate:.1%}")
    if result.p95_ms is not None and result.p95_ms > max_p95_ms:
        found.append(f"p95_latency {result.p95_ms:.0f}ms > max_p95_latency_ms {max_p95_ms:.0f}ms")
    return found


def in_flight(url: str) -> float | None:
    snap = scrape(url, timeout=1.0)
    return None if snap is None else snap.in_flight
