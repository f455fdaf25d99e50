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

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not re.fullmatch(r"127\.0\.0\.1:\d{1,5}", value):
            raise ValueError(f"{value!r}: the local Prometheus listens on loopback only (127.0.0.1:PORT)")
        return value

    def query_url(self) -> str | None:
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.listen}" if self.prometheus == "local" else None
