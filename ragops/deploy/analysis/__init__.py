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


class BuiltinProvider:
    name = "builtin"

    def __init__(self, config) -> None:
        self.a = config.deploy.analysis

    def describe(self) -> str:
        a = self.a
        return (f"error rate <= {a.max_error_rate:.0%}, p95 <= {a.max_p95_latency_ms:.0f}ms, "
                f">= {a.min_requests} requests (no data: {a.no_data_retries} retries, then inconclusive)")

    def analyze(self, target: Target, *, window: float, on_sample=None, should_stop=None) -> AnalysisResult:
        a = self.a
        return builtin.analyze(target.color, target.url, window=window, max_error_rate=a.max_error_rate,
                       max_p95_ms=a.max_p95_latency_ms, min_requests=a.min_requests,
                       no_data_retries=a.no_data_retries, probe_rps=a.probe_rps, interval=a.interval,
                       on_sample=on_sample, should_stop=should_stop)


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, config) -> None:
        from ragops.errors import ConfigError
        from ragops.settings.analysis import default_metrics

        self.a = config.deploy.analysis
        self.url = config.env.monitoring.query_url()
        if not self.url:
            raise ConfigError("deploy.analysis.provider: prometheus needs monitoring.url "
                              "(or monitoring.prometheus: local)")
        self.timeout = config.env.monitoring.query_timeout
        self.metrics = list(self.a.metrics) or default_metrics(self.a.max_error_rate, self.a.max_p95_latency_ms)

    def describe(self) -> str:
        parts = []
        for m in self.metrics:
            limits = [f"max ratio {m.max_ratio:g}" if m.max_ratio is not None else "",
                      f"max difference {m.max_difference:g}" if m.max_difference is not None else ""]
            rule = (f"vs stable ({' or '.join(x for x in limits if x)})" if m.compare == "baseline" else m.success)
            parts.append(f"{m.name} {rule}")
        return f"Prometheus {self.url}: " + "; ".join(parts)

    def analyze(self, target: Target, *, window: float, on_sample=None, should_stop=None) -> AnalysisResult:
        from ragops.deploy.analysis import prometheus

        target.window_text = prometheus.promql_duration(window)
        client = prometheus.PrometheusClient(self.url or "", timeout=self.timeout)
        try:
            return prometheus.analyze(target, self.metrics, client, window=window, interval=self.a.interval,
                                      probe_rps=self.a.probe_rps, on_sample=on_sample, should_stop=should_stop)
        finally:
            client.close()


PROVIDERS: dict[str, type] = {"builtin": BuiltinProvider, "prometheus": PrometheusProvider}


def get_provider(config) -> MetricProvider:
    provider: MetricProvider = PROVIDERS[config.deploy.analysis.provider](config)
    return provider
