"""The `prometheus` metric provider: PromQL queries against a Prometheus server's HTTP API.

Every `interval` seconds during the window each metric's query is evaluated (`/api/v1/query`) with
`{{color}}`, `{{version}}` and `{{window}}` filled in. A measurement fails when its success condition
does not hold (or, with `compare: baseline`, when the canary is worse than the stable color by more
than the allowed ratio/difference); more failures than the metric's `failure_limit` fail the
analysis at once. At the end of the window a metric whose last measurement had no data or fell in
its inconclusive range makes the whole analysis inconclusive: never a pass.

No data is not zero: each round first counts the samples Prometheus holds of the canary's own series
in the window (`deploy.analysis.samples_query`); with fewer than two, `increase()` and `rate()` have
nothing to measure, so a passing value of that round is recorded as inconclusive. A metric with
`dry_run: true` is measured and reported but never decides.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from ragops.deploy.analysis.builtin import AnalysisResult, probe_load
from ragops.durations import format_duration
from ragops.settings.analysis import MetricSpec, holds


@dataclass
class Measurement:
    name: str
    value: float | None = None
    baseline: float | None = None
    passed: bool = False
    inconclusive: bool = False
    failures: int = 0
    why: str = ""
    skipped: bool = False          # not measured (a baseline metric without a stable color): never a pass
    dry_run: bool = False          # measured and reported, never deciding

    def summary(self) -> dict:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 6)
        extra = {**({"skipped": True} if self.skipped else {}), **({"dry_run": True} if self.dry_run else {})}
        return {"name": self.name, "value": r(self.value), "baseline": r(self.baseline), "passed": self.passed,
                "inconclusive": self.inconclusive, "failures": self.failures, "why": self.why, **extra}


@dataclass
class Target:
    """What one analysis looks at: the color under test, its version, the stable color for baselines."""
    color: str
    version: str
    baseline_color: str | None = None
    baseline_version: str = ""          # what the stable color runs ({{version}} of baseline queries)
    url: str = ""                       # the color's own URL (synthetic probes)
    window_text: str = "30s"            # PromQL duration for {{window}}
    extra: dict = field(default_factory=dict)


def render(query: str, color: str, version: str, window: str) -> str:
    return query.replace("{{color}}", color).replace("{{version}}", version).replace("{{window}}", window)


def promql_duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


class PrometheusClient:
    """One keep-alive connection for a whole analysis: a new httpx client per query (TLS context,
    pool, connect) cost 20x the query itself (bench/analysis_bench.py)."""

    def __init__(self, url: str, timeout: float = 5.0):
        import httpx

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def query(self, promql: str) -> tuple[float | None, str]:
        """The query's single value (None when it has no data) and why when there is none."""
        import httpx

        try:
            resp = self.http.get(f"{self.url}/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            return None, f"Prometheus at {self.url} not reachable ({type(exc).__name__})"
        try:
            body = resp.json()
        except ValueError:
            return None, f"Prometheus answered {resp.status_code} without JSON"
        if body.get("status") != "success":
            return None, f"query refused: {body.get('error', resp.status_code)}"
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar" and result:
            value = float(result[1])
        elif isinstance(result, list) and result:
            if len(result) > 1:
                return None, f"query returned {len(result)} series, expected one (aggregate it with sum/max)"
            value = float(result[0]["value"][1])
        else:
            return None, "no data"
        if math.isnan(value) or math.isinf(value):
            return None, "no data (NaN: nothing was counted in the window)"
        return value, ""


def judge(spec: MetricSpec, value: float | None, baseline: float | None, why: str) -> Measurement:
    m = Measurement(spec.name, value=value, baseline=baseline)
    if value is None:
        m.inconclusive, m.why = True, f"{spec.name}: {why or 'no data'}"
        return m
    if spec.compare == "baseline":
        if baseline is None:
            m.inconclusive, m.why = True, f"{spec.name}: no data for the baseline (stable color)"
            return m
        checks = []
        if spec.max_difference is not None:
            checks.append((value - baseline <= spec.max_difference + 1e-12,
                           f"canary - stable = {value - baseline:.4g} (max {spec.max_difference:g})"))
        if spec.max_ratio is not None:
            ratio_ok = value <= baseline * spec.max_ratio + 1e-12
            shown = "inf" if baseline == 0 and value > 0 else f"{(value / baseline) if baseline else 1:.3g}"
            checks.append((ratio_ok, f"canary/stable = {shown} (max {spec.max_ratio:g})"))
        m.passed = any(ok for ok, _ in checks)
        m.why = f"{spec.name} {value:.4g} vs stable {baseline:.4g}: " + ", ".join(text for _, text in checks)
    else:
        assert spec.success is not None
        m.passed = holds(spec.success, value)
        m.why = f"{spec.name} {value:.4g} {'meets' if m.passed else 'breaks'} {spec.success}"
    if not m.passed:
        return m
    if spec.inconclusive and spec.inconclusive[0] <= value <= spec.inconclusive[1]:
        m.passed, m.inconclusive = False, True
        m.why = f"{spec.name} {value:.4g} in the inconclusive range {list(spec.inconclusive)}"
    return m


def measure(client: PrometheusClient, spec: MetricSpec, target: Target) -> Measurement:
    if spec.compare == "baseline" and not target.baseline_color:
        # blue-green, or a canary at 100 %: the stable color takes no traffic to compare with
        return Measurement(spec.name, skipped=True, dry_run=spec.dry_run,
                           why=f"{spec.name}: skipped (no stable color with traffic)")
    value, why = client.query(render(spec.query, target.color, target.version, target.window_text))
    baseline = None
    if spec.compare == "baseline" and target.baseline_color:
        baseline, _ = client.query(render(spec.query, target.baseline_color, target.baseline_version,
                                          target.window_text))
    m = judge(spec, value, baseline, why)
    m.dry_run = spec.dry_run
    return m


def samples(client: PrometheusClient, query: str | None, target: Target) -> tuple[float | None, str]:
    """How many samples of the canary's own series Prometheus holds in the window (None: not asked)."""
    if not query:
        return None, ""
    count, why = client.query(render(query, target.color, target.version, target.window_text))
    return (0.0 if count is None else count), why


def too_few(m: Measurement, count: float | None, target: Target) -> None:
    """A pass measured on fewer than two samples is no pass: increase() had nothing to compare."""
    if count is None or count >= MIN_SAMPLES or not m.passed:
        return
    m.passed, m.inconclusive = False, True
    m.why = (f"{m.name}: too few samples ({count:.0f} scrape(s) of {target.color} {target.version} in "
             f"{target.window_text}, need {MIN_SAMPLES}; the value {m.value} says nothing)")


def wait_scraped(client: PrometheusClient, query: str, target: Target, timeout: float) -> str | None:
    """None once Prometheus holds a sample of the new color's own series; else why not (after `timeout`)."""
    probe = Target(color=target.color, version=target.version, window_text="5m")
    deadline = time.monotonic() + timeout
    while True:
        count, why = samples(client, query, probe)
        if count:
            return None
        if time.monotonic() >= deadline:
            return (f"Prometheus at {client.url} has no sample of {target.color} ({target.version}) after "
                    f"{timeout:.0f}s: it is not scraping that color's target"
                    + (f" ({why})" if why and why != "no data" else ""))
        time.sleep(0.5)


MIN_SAMPLES = 2


def analyze(target: Target, metrics: list[MetricSpec], client: PrometheusClient, *, window: float,
            interval: float, probe_rps: float = 0.0, on_sample=None, should_stop=None,
            samples_query: str | None = None) -> AnalysisResult:
    """Evaluate every metric each `interval` for `window` seconds; fail fast past a failure limit."""
    result = AnalysisResult(color=target.color, passed=False)
    failures = {spec.name: 0 for spec in metrics}
    latest: dict[str, Measurement] = {}
    stop = threading.Event()
    prober = None
    if probe_rps > 0 and target.url:
        prober = threading.Thread(target=probe_load, args=(target.url, stop, probe_rps), daemon=True)
        prober.start()
    start = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - start
            time.sleep(max(0.0, min(interval, window - elapsed)))
            count, _ = samples(client, samples_query, target)
            for spec in metrics:
                m = measure(client, spec, target)
                too_few(m, count, target)
                if not m.passed and not m.inconclusive and not m.skipped and not m.dry_run:
                    failures[spec.name] += 1
                m.failures = failures[spec.name]
                latest[spec.name] = m
            result.window_s = time.monotonic() - start
            result.metrics = [m.summary() for m in latest.values()]
            if on_sample:
                on_sample(result)
            failed = [m for m in latest.values() if m.failures > _limit(metrics, m.name)]
            if failed:
                result.breaches = [f"{m.why} ({m.failures} failed measurements, limit "
                                   f"{_limit(metrics, m.name)})" for m in failed]
                return result
            if result.window_s >= window or (should_stop and should_stop()):
                break
    finally:
        stop.set()
    unsure = [m for m in latest.values() if m.inconclusive and not m.dry_run]
    if unsure:
        result.inconclusive = True
        result.breaches = [f"inconclusive: {m.why} after {format_duration(result.window_s)}" for m in unsure]
        return result
    result.passed = True
    return result


def _limit(metrics: list[MetricSpec], name: str) -> int:
    return next(spec.failure_limit for spec in metrics if spec.name == name)
