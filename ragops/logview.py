"""Reading the service's JSON log lines for `ragops logs`: parse, filter, and print them pretty.

A line that is not a JSON object (Traefik's, PostgreSQL's, the service in RAG_LOG_FORMAT=text) is
kept as text: it passes the --grep filter like any line and has no level, trace or deploy id.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def parse(line: str) -> dict | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "message" in record else None


def when(record: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(record.get("timestamp", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class LogFilter:
    level: str | None = None
    grep: str | None = None
    trace: str | None = None
    deploy: str | None = None
    since: datetime | None = None

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.grep) if self.grep else None

    @property
    def structured(self) -> bool:
        """Filters that only a JSON line can pass (a text line has no level, trace, deploy or time)."""
        return any((self.level, self.trace, self.deploy, self.since))

    def keep(self, line: str, record: dict | None) -> bool:
        if self._pattern and not self._pattern.search(line):
            return False
        if record is None:
            return not self.structured
        if self.level and LEVELS.get(str(record.get("level")), 0) < LEVELS[self.level]:
            return False
        if self.trace and record.get("trace_id") != self.trace:
            return False
        if self.deploy and record.get("ragops.deploy_id") != self.deploy:
            return False
        moment = when(record)
        return not (self.since and (moment is None or moment < self.since))


def pretty(record: dict) -> str:
    """One readable line: time, level, color, message, then the context as key=value."""
    moment = str(record.get("timestamp", ""))[11:23]
    context = record.get("context") or {}
    extra = " ".join(f"{k}={v}" for k, v in context.items()) if isinstance(context, dict) else str(context)
    trace = f" trace={record['trace_id'][:16]}" if record.get("trace_id") else ""
    color = f"[{record['color']}] " if record.get("color") else ""
    level = str(record.get("level", "")).upper()
    return f"{moment} {level:7} {color}{record.get('message', '')}{(' ' + extra) if extra else ''}{trace}".rstrip()
