"""The bundled service's environment for one color, shared by the platforms that start colors.

Kept out of base.py: it needs ragops.db.connect, which asks the platform registry for capabilities.
"""
from __future__ import annotations

from ragops.config import Config
from ragops.db.connect import api_keys, app_dsn


def service_env(config: Config, color: str, version: str, extra: dict[str, str] | None,
                deploy_id: str | None = None) -> dict[str, str]:
    """The bundled service's environment for one color (secrets resolved here, never logged). The
    environment's name and the deploy id label its log lines (RAG_LOG_FORMAT=json)."""
    service = config.service
    env = {
        "RAG_DATABASE_URL": app_dsn(config),
        "RAG_API_KEYS": ",".join(api_keys(config)),
        "RAG_VERSION": version,
        "RAG_COLOR": color,
        "RAG_ENVIRONMENT": config.env_name,
        **({"RAG_DEPLOY_ID": deploy_id} if deploy_id else {}),
        "RAG_RATE_LIMIT_PER_MINUTE": str(service.rate_limit_per_minute),
        "RAG_CORS_ORIGINS": ",".join(service.cors_origins),
        "RAG_GRACEFUL_TIMEOUT": str(int(config.deploy.drain_timeout)),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(config.env.monitoring.otel_env())   # monitoring.tracing: local
    for name, ref in service.secrets.items():
        env[name] = config.reveal(ref, f"service.secrets.{name}")
    env.update(service.env)
    env.update(extra or {})
    return env
