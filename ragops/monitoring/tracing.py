"""`monitoring.tracing: local`: a real Jaeger (v2, OTLP receiver + in-memory store + query API)
beside the local platform's colors.

`ragops up` starts it on loopback (`monitoring.otlp_listen` for spans, `monitoring.tracing_listen`
for the query API and UI) with its config under <state dir>/jaeger; the supervisor restarts it, and
`ragops down` stops it. The colors get RAG_OTEL_ENDPOINT / RAG_OTEL_SAMPLE_RATIO (MonitoringSettings.otel_env).

The binary is built from the Go module proxy (`scripts/jaeger-build.sh`, into a cache outside the
clone): RAGOPS_JAEGER_BIN, else that cache, else `jaeger` on PATH.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import yaml

from ragops.errors import OperationFailed

PROC = "jaeger"
BUILD_CACHE = Path(os.environ.get("RAGOPS_GO_CACHE", "/var/cache/ragops-go")) / "bin" / "jaeger"


def binary() -> str | None:
    configured = os.environ.get("RAGOPS_JAEGER_BIN")
    if configured:
        return configured if Path(configured).is_file() else None
    if BUILD_CACHE.is_file():
        return str(BUILD_CACHE)
    return shutil.which("jaeger")


def jaeger_config(otlp: str, query: str, query_grpc: str) -> dict:
    """Jaeger v2 (an OpenTelemetry collector): OTLP/HTTP in, memory storage, the query API; nothing
    listens beyond loopback and nothing else is enabled (no internal metrics port)."""
    return {
        "service": {"extensions": ["jaeger_storage", "jaeger_query"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["jaeger_storage_exporter"]}},
                    "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}}},
        "extensions": {"jaeger_query": {"storage": {"traces": "memstore"},
                                        "http": {"endpoint": query}, "grpc": {"endpoint": query_grpc}},
                       "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}}},
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": otlp}}}},
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def ready(listen: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(f"http://{listen}/api/services", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def ensure(platform, progress) -> list[str]:
    """Start the local Jaeger unless it runs (or monitoring.tracing is not `local`)."""
    settings = platform.config.env.monitoring
    if settings.tracing != "local":
        return []
    proc = platform.proc(PROC)
    if proc.running() and ready(settings.tracing_listen):
        return []
    found = binary()
    if found is None:
        raise OperationFailed("monitoring.tracing is local but no jaeger binary was found",
                              hint="scripts/jaeger-build.sh (builds it from the Go module proxy), or set "
                                   "RAGOPS_JAEGER_BIN, or monitoring.tracing: off")
    root = platform.base / "jaeger"
    root.mkdir(parents=True, exist_ok=True)
    host, _, port = settings.tracing_listen.rpartition(":")
    config_file = root / "config.yaml"
    from ragops.fsutil import write_atomic

    write_atomic(config_file, yaml.safe_dump(jaeger_config(settings.otlp_listen, settings.tracing_listen,
                                                           f"{host}:{int(port) + 1}"), sort_keys=False))
    progress(f"starting jaeger (OTLP on {settings.otlp_listen}, query on {settings.tracing_listen})")
    proc.start([found, f"--config={config_file}"], marker=str(config_file))
    deadline = time.monotonic() + 30
    while not ready(settings.tracing_listen):
        if not proc.running() or time.monotonic() > deadline:
            from ragops.process import tail

            raise OperationFailed(f"jaeger did not start on {settings.tracing_listen}: {tail(proc.log_file, 3) or 'no log'}")
        time.sleep(0.1)
    return ["start jaeger"]


def stop(platform) -> bool:
    proc = platform.proc(PROC)
    was_running = proc.running()
    proc.stop(timeout=10)
    return was_running
