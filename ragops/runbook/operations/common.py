"""Small helpers the operation modules share: parameter coercion and result shaping."""
from __future__ import annotations

from typing import Any, overload

from ragops import platforms
from ragops.durations import parse_duration
from ragops.errors import ConfigError, RagopsError
from ragops.journal import to_jsonable


class Unset:
    """The default of a parameter whose mere presence matters (`expect: null` checks for NULL)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = Unset()


def with_outputs(error: RagopsError, outputs: dict) -> RagopsError:
    """Attach what the step saw to its failure, so the run record shows it."""
    error.outputs = outputs
    return error


def to_outputs(value: Any) -> dict:
    """Turn an operation's result (dataclass, dict, object with to_dict, scalar) into outputs."""
    if value is None:
        return {}
    if hasattr(value, "to_dict") and not isinstance(value, type):
        value = value.to_dict()          # e.g. LoadStats: rps, p95_ms, error_rate are properties
    data = to_jsonable(value)
    if isinstance(data, dict):
        return data
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return to_jsonable({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return {"result": data}


def flag(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None


@overload
def duration(value: Any, name: str, default: float) -> float: ...
@overload
def duration(value: Any, name: str, default: None = None) -> float | None: ...


def duration(value: Any, name: str, default: float | None = None) -> float | None:
    """Seconds from a duration ("90s", "5m", 30); `default` when the value is empty."""
    if value is None or value == "":
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def optional_int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def truncate(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def router_url(config) -> str:
    try:
        return platforms.get_platform(config).router_url().rstrip("/")
    except Exception:  # noqa: BLE001 - fall back to the configured listen address
        host, _, port = config.router.listen.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"
