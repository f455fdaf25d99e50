"""Human durations in config and on the command line: 30s, 2m, 1h30m, 500ms, 26h, or plain seconds."""
from __future__ import annotations

import math
import re

MAX_DURATION_S = 3660 * 86400  # 3660d (~10 years: the shipped drills say "any age" as 3650d); ragops.bounds lists the tighter ones

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Return seconds; raise ValueError with a message fit for a one-line error. At most
    MAX_DURATION_S: no duration ragops waits for is longer."""
    seconds = _seconds(value)
    if math.isnan(seconds):
        raise ValueError(f"expected a duration like 30s or 2m, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration {value!r} is above the maximum {MAX_DURATION_S // 86400:.0f}d")
    return seconds


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s or 2m, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration {value} is negative")
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected a duration like 30s, 2m or 1h30m, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s".replace(".0s", "s")
    if seconds < 7200:
        return f"{seconds / 60:.1f}m".replace(".0m", "m")
    return f"{seconds / 3600:.1f}h".replace(".0h", "h")
