"""Monitoring: render the alert rules and dashboard, watch the service's /metrics over a window."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from ragops.errors import GateFailed
from ragops.resources import shipped_dir
from ragops.runbook import metrics
from ragops.runbook.operations.common import duration, number, with_outputs
from ragops.runbook.operations.registry import Context, operation

GUIDE_ALERTS = ("RagApiDown", "RagDatabaseConnectionFailure", "RagHighErrorRate", "RagDiskSpaceHigh",
                "RagSlowResponses", "RagMemoryHigh", "RagBackupFailed", "RagTlsCertificateExpiring",
                "RagWalArchiveLagging", "RagPitrBeyondRpo")


def templates_dir(config) -> Path:
    """The project's own templates/ when it has alert rules, else the ones shipped with ragops."""
    if config is not None and (config.base_dir / "templates" / "alerts").is_dir():
        return config.base_dir / "templates"
    return shipped_dir("templates")


@operation("monitoring.render", gate=True)
def monitoring_render(ctx: Context, *, dest: str | None = None) -> dict:
    """Render the alert rules and the Grafana dashboard from templates/ and check them.

    dest: output folder (default <state_dir>/monitoring).
    """
    templates = templates_dir(ctx.config)
    target = Path(dest or (ctx.require_config().state_dir / "monitoring"))
    files: list[str] = []
    alerts: list[str] = []
    rules = sorted((templates / "alerts").glob("*.y*ml"))
    dashboards = sorted((templates / "grafana").glob("*.json"))
    if not rules:
        raise GateFailed(f"no alert rule files under {templates / 'alerts'}")
    if not dashboards:
        raise GateFailed(f"no Grafana dashboard under {templates / 'grafana'}")
    (target / "alerts").mkdir(parents=True, exist_ok=True)
    (target / "grafana").mkdir(parents=True, exist_ok=True)
    for path in rules:
        data = yaml.safe_load(path.read_text())
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" not in rule or "expr" not in rule:
                    raise GateFailed(f"{path}: a rule without alert/expr")
                alerts.append(rule["alert"])
        shutil.copy2(path, target / "alerts" / path.name)
        files.append(str(target / "alerts" / path.name))
    for path in dashboards:
        json.loads(path.read_text())
        shutil.copy2(path, target / "grafana" / path.name)
        files.append(str(target / "grafana" / path.name))
    missing = [a for a in GUIDE_ALERTS if a not in alerts]
    if missing:
        raise GateFailed(f"alert rules missing for the guide's alerting strategy: {', '.join(missing)}")
    return {"dest": str(target), "files": files, "alerts": alerts}


@operation("metrics.watch", gate=True)
def metrics_watch(ctx: Context, *, window: str | float | None = None, interval: str | float | None = None,
                  max_error_rate: float | None = None, max_p95_ms: float | None = None, min_requests: int = 0,
                  urls: str | list | None = None) -> dict:
    """Scrape the service's /metrics over a window; gate on error rate and p95 latency.

    window: default 30s; interval: between scrapes (default 5s); max_error_rate and max_p95_ms
    default to deploy.analysis; fewer than min_requests requests is 'no data' (default 0: allowed);
    urls: default every live color's /metrics.
    """
    config = ctx.config
    window_s = duration(window, "window", 30.0)
    interval_s = duration(interval, "interval", 5.0)
    analysis = config.deploy.analysis if config is not None else None
    error_limit = number(max_error_rate, "max_error_rate")
    if error_limit is None and analysis is not None:
        error_limit = analysis.max_error_rate
    p95_limit = number(max_p95_ms, "max_p95_ms")
    if p95_limit is None and analysis is not None:
        p95_limit = analysis.max_p95_latency_ms
    if not urls:
        urls = metrics.live_metrics_urls(ctx.require_config())
    if isinstance(urls, str):
        urls = [urls]
    first = metrics.scrape_all(urls)
    samples = 1
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        ctx.sleep(min(interval_s, max(end - time.monotonic(), 0)))
        current = metrics.scrape_all(urls)
        samples += 1
        stats = metrics.delta(first, current)
        ctx.progress(f"{stats['requests']} requests, error rate {stats['error_rate']:.2%}, "
                     f"p95 {stats['p95_ms'] if stats['p95_ms'] is not None else '-'} ms")
    stats = metrics.delta(first, metrics.scrape_all(urls) if samples == 1 else current)
    stats.update({"window_seconds": window_s, "urls": urls})
    problems = []
    least = int(min_requests or 0)
    if stats["requests"] < least:
        problems.append(f"only {stats['requests']} requests in the window (min_requests {least})")
    if error_limit is not None and stats["error_rate"] > error_limit:
        problems.append(f"error rate {stats['error_rate']:.2%} is above {error_limit:.2%}")
    if p95_limit is not None and stats["p95_ms"] is not None and stats["p95_ms"] > p95_limit:
        problems.append(f"p95 {stats['p95_ms']:.0f} ms is above {p95_limit:.0f} ms")
    if problems:
        raise with_outputs(GateFailed("metrics: " + "; ".join(problems)), stats)
    return stats
