"""ragops.yaml `monitoring`: the Prometheus server the analysis reads, and the local one `ragops up` runs."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from ragops.config_types import Strict


class MonitoringSettings(Strict):
    """`monitoring`: where the prometheus analysis provider reads (`url`), and whether `ragops up`
    runs a Prometheus itself (`prometheus: local`, local platform)."""
    prometheus: Literal["off", "local"] = "off"  # local: `ragops up` runs one (local platform)
    url: str | None = None                       # default with local: http://<listen>
    listen: str = "127.0.0.1:9090"               # the local server's address (loopback)
    scrape_interval: str = Field("5s", pattern=r"^[0-9]+(ms|s|m)$")
    retention: str = Field("2d", pattern=r"^[0-9]+[hdw]$")
    query_timeout: float = Field(5.0, gt=0)
    # traces (local platform): `ragops up` runs Jaeger (built from the Go module proxy, see README) and
    # the colors export their spans to it over OTLP/HTTP
    tracing: Literal["off", "local"] = "off"
    tracing_listen: str = "127.0.0.1:16686"          # Jaeger's query API and UI
    otlp_listen: str = "127.0.0.1:4318"              # where the colors send spans (OTLP/HTTP)
    trace_sample_ratio: float = Field(1.0, ge=0, le=1)   # the share of new traces kept (parent based)

    @field_validator("listen", "tracing_listen", "otlp_listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not re.fullmatch(r"127\.0\.0\.1:\d{1,5}", value):
            raise ValueError(f"{value!r}: local monitoring listens on loopback only (127.0.0.1:PORT)")
        return value

    def otel_env(self) -> dict[str, str]:
        """What a color needs to export its spans to the local Jaeger (nothing when tracing is off)."""
        if self.tracing != "local":
            return {}
        return {"RAG_OTEL_ENDPOINT": f"http://{self.otlp_listen}/v1/traces",
                "RAG_OTEL_SAMPLE_RATIO": str(self.trace_sample_ratio)}

    def query_url(self) -> str | None:
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.listen}" if self.prometheus == "local" else None
