"""Upper bounds for every duration, count and size in ragops.yaml (and the CLI's duration options).

Why: a value nobody means (`health_timeout: 99999999999999999999d`, `--step-pause 99999999999999h`)
used to be accepted and held a deploy, and the lock, for longer than the universe is old. Every
setting model (ragops.config_types.Strict) checks its fields against this table after its own
validation, so a model that moves between modules keeps its limits, and the README's
"Configuration limits" table is this file.

- A duration anywhere (config, runbook, command line) is at most MAX_DURATION_S (parse_duration, 3660d).
- A duration in DURATION_MAXIMA is at most its own, smaller, limit.
- An integer or float setting is at most MAX_NUMBER (MAX_BYTES for a `*_bytes` size) unless
  NUMBER_MAXIMA names its own limit (or its own Field declares a smaller `le`), and never less than
  1000 times its default; inf and nan are refused everywhere.
"""
from __future__ import annotations

import math
from typing import Any

from ragops.durations import MAX_DURATION_S, format_duration

__all__ = ["DURATION_MAXIMA", "MAX_BYTES", "MAX_DURATION_S", "MAX_NUMBER", "NUMBER_MAXIMA", "at_most", "check", "number_limit"]
MAX_NUMBER = 1_000_000               # counts, rates, limits without a smaller bound of their own
MAX_BYTES = 1024 ** 4                # a size in bytes (a setting named *_bytes): 1 TiB

HOUR = 3600.0
DURATION_MAXIMA: dict[tuple[str, str], float] = {
    # holds a deploy (and the operations lock) while it runs
    ("CanaryConfig", "step_pause"): 24 * HOUR,
    ("DeployConfig", "health_timeout"): HOUR,
    ("DeployConfig", "drain_timeout"): HOUR,
    ("ServiceConfig", "startup_timeout"): HOUR,
    ("AnalysisConfig", "window"): HOUR,
    ("AnalysisConfig", "interval"): 600.0,
    ("KubernetesSettings", "rollout_timeout"): HOUR,
    ("DnsConfig", "sync_timeout"): HOUR,
    ("DockerDatabaseSettings", "start_timeout"): HOUR,
    ("WalSettings", "archive_timeout"): HOUR,
    ("WalSettings", "poll_interval"): 60.0,
}
CLI_STEP_PAUSE_MAX_S = DURATION_MAXIMA[("CanaryConfig", "step_pause")]   # --step-pause, as in the config
CLI_SHADOW_DURATION_MAX_S = 24 * HOUR                                   # deploy --strategy shadow --duration

NUMBER_MAXIMA: dict[tuple[str, str], float] = {
    ("PatroniSettings", "maximum_lag_on_failover"): 1024 ** 4,   # bytes: 1 TiB
    ("MonitoringSettings", "query_timeout"): 600.0,               # seconds (a number, not a duration)
    ("SloConfig", "rto_seconds"): MAX_DURATION_S,
    ("SloConfig", "rpo_seconds"): MAX_DURATION_S,
}


def check(model: Any, durations: set[str]) -> None:
    """ValueError `field: reason` for the first field of a validated model above its maximum;
    `durations` names its fields that are durations (seconds)."""
    cls = type(model).__name__
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: {value} is not a number ragops can use")
        if name in durations:
            limit = DURATION_MAXIMA.get((cls, name), MAX_DURATION_S)
            if value > limit:
                raise ValueError(f"{name}: {format_duration(value)} is above the maximum {format_duration(limit)}")
            continue
        limit = number_limit(type(model), name)
        if value > limit:
            raise ValueError(f"{name}: {_number(value)} is above the maximum {_number(limit)}")


def number_limit(model: type, name: str) -> float:
    """A number setting's maximum: its own (NUMBER_MAXIMA), else 1 TiB for a size in bytes (`*_bytes`),
    else MAX_NUMBER; never below 1000 times its default (a setting added later with a large default
    is never refused for its own default)."""
    own = NUMBER_MAXIMA.get((model.__name__, name))
    if own is not None:
        return own
    limit = float(MAX_BYTES if name.endswith("_bytes") else MAX_NUMBER)
    field = model.model_fields.get(name)    # type: ignore[attr-defined]
    default = getattr(field, "default", None)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and math.isfinite(default):
        limit = max(limit, abs(default) * 1000)
    return limit


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def at_most(seconds: float, limit: float) -> float:
    """A command-line duration, or ValueError naming its maximum."""
    if seconds > limit:
        raise ValueError(f"{format_duration(seconds)} is above the maximum {format_duration(limit)}")
    return seconds
