"""Metric analysis of a new color, behind one provider interface (Argo Rollouts' metricproviders).

`deploy.analysis.provider` picks the implementation:
- builtin     (builtin.py): two scrapes of the color's own /metrics bracket the window;
- prometheus  (prometheus.py): PromQL queries declared in `deploy.analysis.metrics` against
  `monitoring.url` (or the local Prometheus `ragops up` runs), with baseline comparison.
Both return an AnalysisResult: passed, or failed with breaches, or inconclusive (no data / a value
in an inconclusive range), which is never a pass.
"""
from __future__ import annotations

from typing import Protocol

from ragops.deploy.analysis import builtin
from ragops.deploy.analysis.builtin import (
    AnalysisResult,
    analyze,
    in_flight,
    p95_from_buckets,
    parse_metrics,
)
from ragops.deploy.analysis.prometheus import Target

__all__ = [
    "PROVIDERS",
    "AnalysisResult",
    "MetricProvider",
    "Target",
    "analyze",
    "get_provider",
    "in_flight",
    "p95_from_buckets",
    "parse_metrics",
]


class MetricProvider(Protocol):
    name: str

    def describe(self) -> str:
        """One line: what is measured against which limits (plans and progress)."""

    def analyze(self, target: Target, *, window: float, on_sample=None, should_stop=None) -> AnalysisResult:
        """Watch `target.color` for `window` seconds."""

    def check_scraped(self, target: Target) -> tuple[bool, str]:
        """Before the color takes traffic: whether its metrics can be read, and what was seen
        ("" when the provider has nothing to check)."""


class BuiltinProvider:
    name = "builtin"

    def __init__(self, config) -> None:
        self.a = config.deploy.analysis

    def describe(self) -> str:
        a = self.a
        retrieval = ("" if a.max_empty_results_rate is None else
                     f", queries with no result <= {a.max_empty_results_rate:.0%} (or stable + {builtin.STABLE_MARGIN:.0%})")
        return (f"error rate <= {a.max_error_rate:.0%}, p95 <= {a.max_p95_latency_ms:.0f}ms{retrieval}, "
                f">= {a.min_requests} requests (no data: {a.no_data_retries} retries, then inconclusive)")

    def analyze(self, target: Target, *, window: float, on_sample=None, should_stop=None) -> AnalysisResult:
        a = self.a
        return builtin.analyze(target.color, target.url, window=window, max_error_rate=a.max_error_rate,
                       max_p95_ms=a.max_p95_latency_ms, min_requests=a.min_requests,
                       no_data_retries=a.no_data_retries, probe_rps=a.probe_rps, interval=a.interval,
                       on_sample=on_sample, should_stop=should_stop, max_empty_rate=a.max_empty_results_rate,
                       stable_url=target.extra.get("stable_url"))

    def check_scraped(self, target: Target) -> tuple[bool, str]:
        return True, ""     # it scrapes the color itself


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, config) -> None:
        from ragops.durations import parse_duration
        from ragops.errors import ConfigError
        from ragops.settings.analysis import default_metrics

        self.a = config.deploy.analysis
        self.url = config.env.monitoring.query_url()
        if not self.url:
            raise ConfigError("deploy.analysis.provider: prometheus needs monitoring.url "
                              "(or monitoring.prometheus: local)")
        self.timeout = config.env.monitoring.query_timeout
        self.scrape_interval = parse_duration(config.env.monitoring.scrape_interval)
        self.metrics = list(self.a.metrics) or default_metrics(self.a.max_error_rate, self.a.max_p95_latency_ms)

    def describe(self) -> str:
        parts = []
        for m in self.metrics:
            limits = [f"max ratio {m.max_ratio:g}" if m.max_ratio is not None else "",
                      f"max difference {m.max_difference:g}" if m.max_difference is not None else ""]
            rule = (f"vs stable ({' or '.join(x for x in limits if x)})" if m.compare == "baseline" else m.success)
            parts.append(f"{m.name} {rule}" + (" (dry run)" if m.dry_run else ""))
        return f"Prometheus {self.url}: " + "; ".join(parts)

    def analyze(self, target: Target, *, window: float, on_sample=None, should_stop=None) -> AnalysisResult:
        from ragops.deploy.analysis import prometheus

        target.window_text = prometheus.promql_duration(window)
        client = prometheus.PrometheusClient(self.url or "", timeout=self.timeout)
        try:
            return prometheus.analyze(target, self.metrics, client, window=window, interval=self.a.interval,
                                      probe_rps=self.a.probe_rps, on_sample=on_sample, should_stop=should_stop,
                                      samples_query=self.a.samples_query)
        finally:
            client.close()

    def check_scraped(self, target: Target) -> tuple[bool, str]:
        """Prometheus must hold a sample of the new process before it takes traffic: waits up to two
        scrape intervals (+5 s) for the first scrape."""
        from ragops.deploy.analysis import prometheus

        if not self.a.samples_query:
            return True, ""
        client = prometheus.PrometheusClient(self.url or "", timeout=self.timeout)
        try:
            why = prometheus.wait_scraped(client, self.a.samples_query, target, 2 * self.scrape_interval + 5)
        finally:
            client.close()
        return (False, why) if why else (True, f"Prometheus scrapes {target.color} ({target.version})")


PROVIDERS: dict[str, type] = {"builtin": BuiltinProvider, "prometheus": PrometheusProvider}


def get_provider(config) -> MetricProvider:
    provider: MetricProvider = PROVIDERS[config.deploy.analysis.provider](config)
    return provider
