"""Read the service's Prometheus metrics: request counts by status and the latency histogram.

The service exposes rag_http_requests_total{method,route,status} and the histogram
rag_http_request_duration_seconds. Rates come from the difference of two scrapes.
"""
from __future__ import annotations

import math


def live_metrics_urls(config) -> list[str]:
    from ragops.platforms import get_platform

    platform = get_platform(config)
    urls = [platform.color_url(c.color).rstrip("/") + "/metrics" for c in platform.colors()
            if c.running and c.weight > 0]
    if not urls:
        from ragops.errors import OperationFailed

        raise OperationFailed("no live color to read /metrics from")
    return urls


def scrape(url: str) -> dict:
    """{'requests': {status: count}, 'buckets': {le: count}} summed over routes and methods."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    requests: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "rag_http_requests_total":
                status = str(sample.labels.get("status", ""))
                requests[status] = requests.get(status, 0.0) + sample.value
            elif sample.name == "rag_http_request_duration_seconds_bucket":
                le = float(sample.labels.get("le", "inf"))
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return {"requests": requests, "buckets": buckets}


def scrape_all(urls: list[str]) -> dict:
    total: dict[str, dict[str, float]] = {"requests": {}, "buckets": {}}
    for url in urls:
        one = scrape(url)
        for key in ("requests", "buckets"):
            for label, value in one[key].items():
                total[key][label] = total[key].get(label, 0.0) + value
    return total


def delta(first: dict, last: dict) -> dict:
    """Requests, error rate (5xx share) and p95 (ms, from histogram buckets) between two scrapes."""
    counts = {s: last["requests"].get(s, 0.0) - first["requests"].get(s, 0.0) for s in last["requests"]}
    total = sum(v for v in counts.values() if v > 0)
    errors = sum(v for s, v in counts.items() if s.startswith("5") and v > 0)
    buckets = sorted((le, last["buckets"].get(le, 0.0) - first["buckets"].get(le, 0.0)) for le in last["buckets"])
    return {"requests": int(total), "errors": int(errors), "error_rate": (errors / total) if total else 0.0,
            "p95_ms": quantile_ms(buckets, 0.95)}


def quantile_ms(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style histogram_quantile over cumulative (le, count) pairs."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return round(previous_le * 1000, 1)
            width = count - previous_count
            fraction = (rank - previous_count) / width if width > 0 else 1.0
            return round((previous_le + (le - previous_le) * fraction) * 1000, 1)
        previous_le, previous_count = le, count
    return round(previous_le * 1000, 1)
