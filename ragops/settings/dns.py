"""Settings of Route 53 health checks (`dns.health_checks` in ragops.yaml).

`dns.health_checks: true` is short for `{enabled: true}`; the endpoints are the region values the
record already uses (dns.primary / dns.secondary, or regions.<name>.dns_value).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ragops.config_types import Port, Strict


class HealthCheckSettings(Strict):
    enabled: bool = False
    path: str | None = None                          # default: service.health_path
    protocol: Literal["HTTPS", "HTTP"] = "HTTPS"
    port: Port | None = None                         # default: 443 (HTTPS) or 80 (HTTP)
    interval: Literal[10, 30] = 30                   # seconds between Route 53's probes
    failure_threshold: int = Field(3, ge=1, le=10)   # failed probes before a region is unhealthy

    @model_validator(mode="before")
    @classmethod
    def _bool_shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        if path is not None and (not path.startswith("/") or " " in path or len(path) > 255):
            raise ValueError(f"must be an absolute URL path like /healthz, got {path!r}")
        return path

    def effective_port(self) -> int:
        return self.port or (443 if self.protocol == "HTTPS" else 80)
