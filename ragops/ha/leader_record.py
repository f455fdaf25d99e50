"""The leader `down` stopped last, so `up` starts that node first (ragops/ha/manager.py).

Starting another node first would let Patroni promote a node that is behind it: the writes the
real last leader acknowledged after a failover would be rewound away, on a new timeline.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ragops import journal


def record_file(config) -> Path:
    return config.state_dir / "ha" / "last-leader.json"


def write_last_leader(config, name: str) -> None:
    record_file(config).parent.mkdir(parents=True, exist_ok=True)
    journal.write_json(record_file(config), {"leader": name,
                                             "at": datetime.now(UTC).isoformat(timespec="seconds")})


def read_last_leader(config) -> str | None:
    data = journal.read_json(record_file(config)) or {}
    name = data.get("leader")
    return name if isinstance(name, str) else None
