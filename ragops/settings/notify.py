"""ragops.yaml `notify`: where deploy, rollback and failover events go."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ragops.config_types import SecretRef, Strict

NotifyEvent = Literal["start", "paused", "rolled_back", "succeeded", "failed", "aborted"]


class NotifySettings(Strict):
    webhook: SecretRef | None = None             # a Slack-compatible incoming webhook (the URL is a secret)
    on: list[NotifyEvent] = ["start", "paused", "rolled_back", "succeeded", "failed"]
    timeout: float = Field(5.0, gt=0, le=60)     # a slow webhook never holds a deploy longer than this
