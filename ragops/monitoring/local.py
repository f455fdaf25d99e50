"""`monitoring.prometheus: local`: a real Prometheus next to the local platform's router and colors.

`ragops up` starts it (Debian's `prometheus` binary) on the loopback address `monitoring.listen`,
scraping both colors (each target labelled with its `color`) and the router's metrics, with its
config and TSDB under <state dir>/prometheus; the supervisor restarts it like the router, and
`ragops down` stops it. The prometheus analysis provider then reads it through `/api/v1/query`.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from ragops.errors import OperationFailed
from ragops.resources import shipped_dir

PROC = "prometheus"


def binary() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def scrape_config(colors: dict[str, str], router_api: str | None, interval: str, rule_files: list[str] | None = None) -> dict:
    """colors: color -> base URL (http://127.0.0.1:PORT)."""
    jobs = [{"job_name": "rag-colors", "metrics_path": "/metrics",
             "static_configs": [{"targets": [url.split("://", 1)[-1]], "labels": {"color": color}}
                                for color, url in sorted(colors.items())]}]
    if router_api:
        jobs.append({"job_name": "router", "static_configs": [{"targets": [router_api]}]})
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": interval if _seconds(interval) < 10 else "10s"},
            "scrape_configs": jobs, **({"rule_files": rule_files} if rule_files else {})}


def _seconds(text: str) -> float:
    from ragops.durations import parse_duration

    return parse_duration(text)


def ready(listen: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(f"http://{listen}/-/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def ensure(platform, progress) -> list[str]:
    """Start the local Prometheus unless it runs (or monitoring.prometheus is not `local`)."""
    settings = platform.config.env.monitoring
    if settings.prometheus != "local":
        return []
    proc = platform.proc(PROC)
    if proc.running() and ready(settings.listen):
        return []
    found = binary()
    if found is None:
        raise OperationFailed("monitoring.prometheus is local but the prometheus binary is not installed",
                              hint="apt-get install prometheus, or set monitoring.prometheus: off")
    root = platform.base / "prometheus"
    (root / "data").mkdir(parents=True, exist_ok=True)
    config_file = root / "prometheus.yml"
    from ragops.fsutil import write_atomic

    colors = {color: platform.color_url(color) for color in ("blue", "green")}
    # Traefik serves its own metrics on its API entry point (routing/traefik_file.py static config)
    router_api = platform.router_api if platform.config.router.kind == "traefik" else None
    # the shipped alert rules, copied beside the config so Prometheus evaluates them (ragops audit checks it)
    rules = shipped_dir("templates") / "alerts" / "ragops-alerts.yml"
    rule_files = []
    if rules.is_file():
        write_atomic(root / "ragops-alerts.yml", rules.read_text())
        rule_files.append(str(root / "ragops-alerts.yml"))
    write_atomic(config_file, yaml.safe_dump(scrape_config(colors, router_api, settings.scrape_interval, rule_files),
                                             sort_keys=False))
    progress(f"starting prometheus on {settings.listen} (scrapes the router and both colors)")
    proc.start([found, f"--config.file={config_file}", f"--storage.tsdb.path={root / 'data'}",
                f"--storage.tsdb.retention.time={settings.retention}",
                f"--web.listen-address={settings.listen}"], marker=str(config_file))
    deadline = time.monotonic() + 30
    while not ready(settings.listen):
        if not proc.running() or time.monotonic() > deadline:
            from ragops.process import tail

            raise OperationFailed(f"prometheus did not start on {settings.listen}: "
                                  f"{tail(proc.log_file, 3) or 'no log'}")
        time.sleep(0.1)
    return ["start prometheus"]


def running(platform) -> bool:
    return platform.config.env.monitoring.prometheus == "local" and platform.proc(PROC).running()


def stop(platform) -> bool:
    proc = platform.proc(PROC)
    was_running = proc.running()
    proc.stop(timeout=10)
    return was_running
