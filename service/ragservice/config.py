"""Settings from the environment, read once at start-up."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"error: {name}: expected a number, got {raw!r}") from None


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in choices:
        raise SystemExit(f"error: {name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    api_keys: tuple[str, ...] = ()
    version: str = "dev"
    color: str = "none"
    rate_limit_per_minute: float = 600
    cors_origins: tuple[str, ...] = ()
    graceful_timeout: float = 30
    fault_error_rate: float = 0.0
    fault_latency_ms: float = 0.0
    fault_readiness_fail: bool = False
    fault_after_s: float = 0.0          # faults start this long after start-up (a version that degrades)
    fault_retrieval: str = ""           # empty | shuffle: 200 answers with no or wrong documents (faults.py)
    migrations_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent / "migrations")
    max_document_bytes: int = 5_000_000
    pool_size: int = 10
    db_retry_seconds: float = 10.0      # a request waits this long for a lost primary (switchover) before 503
    metrics_auth: str = "proxied"       # /metrics needs X-API-Key: proxied (through a router) | always | never

    @classmethod
    def from_env(cls) -> "Settings":
        error_rate = _float("RAG_FAULT_ERROR_RATE", 0.0)
        if not 0.0 <= error_rate <= 1.0:
            raise SystemExit(f"error: RAG_FAULT_ERROR_RATE: expected 0..1, got {error_rate}")
        migrations = os.environ.get("RAG_MIGRATIONS_DIR")
        retrieval = os.environ.get("RAG_FAULT_RETRIEVAL", "").strip().lower()
        if retrieval not in ("", "empty", "shuffle"):
            raise SystemExit(f"error: RAG_FAULT_RETRIEVAL: expected empty or shuffle, got {retrieval!r}")
        return cls(
            database_url=os.environ.get("RAG_DATABASE_URL", ""),
            api_keys=tuple(_list("RAG_API_KEYS")),
            version=os.environ.get("RAG_VERSION", "dev"),
            color=os.environ.get("RAG_COLOR", "none"),
            rate_limit_per_minute=_float("RAG_RATE_LIMIT_PER_MINUTE", 600),
            cors_origins=tuple(_list("RAG_CORS_ORIGINS")),
            graceful_timeout=_float("RAG_GRACEFUL_TIMEOUT", 30),
            fault_error_rate=error_rate,
            fault_latency_ms=_float("RAG_FAULT_LATENCY_MS", 0.0),
            fault_after_s=_float("RAG_FAULT_AFTER_S", 0.0),
            fault_retrieval=retrieval,
            fault_readiness_fail=os.environ.get("RAG_FAULT_READINESS_FAIL", "").strip().lower() in ("1", "true", "yes"),
            migrations_dir=Path(migrations) if migrations else cls.__dataclass_fields__["migrations_dir"].default_factory(),
            max_document_bytes=int(_float("RAG_MAX_DOCUMENT_BYTES", 5_000_000)),
            pool_size=int(_float("RAG_DB_POOL_SIZE", 10)),
            db_retry_seconds=_float("RAG_DB_RETRY_SECONDS", 10.0),
            metrics_auth=_choice("RAG_METRICS_AUTH", ("proxied", "always", "never"), "proxied"),
        )
