"""Run state and the audit log, under <state_dir>/runbook-runs/<run_id>/.

state.json  the run as it stands (step results and outputs, the runbook's content hash), rewritten
            atomically after every step, so `resume` can continue at the failed step.
audit.jsonl append-only: one JSON line per event (timestamp, actor, host, step, parameters and
            outputs with secrets redacted, duration, result).
"""
from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path

from ragops import journal
from ragops.errors import ConfigError


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def actor() -> str:
    """Who is running this: RAGOPS_ACTOR, else user@host."""
    explicit = os.environ.get("RAGOPS_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_run_id(runbook: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{runbook}-{secrets.token_hex(3)}"


class RunStore:
    """One run's directory: state.json and audit.jsonl."""

    def __init__(self, runs_dir: Path, run_id: str):
        self.runs_dir = Path(runs_dir)
        self.run_id = run_id
        self.dir = self.runs_dir / run_id

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def audit_path(self) -> Path:
        return self.dir / "audit.jsonl"

    def save(self, state: dict) -> None:
        journal.write_json(self.state_path, state)

    def load(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no runbook run {self.run_id!r} under {self.runs_dir}",
                              hint="ragops runbook runs") from None

    def audit(self, record: dict) -> None:
        """Append one redacted record; the file is only ever appended to."""
        journal.append(self.audit_path, {"ts": now_iso(), **record})


def list_runs(runs_dir: Path) -> list[dict]:
    runs: list[dict] = []
    if not Path(runs_dir).is_dir():
        return runs
    for path in Path(runs_dir).glob("*/state.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        runs.append(state)
    runs.sort(key=lambda s: s.get("started_at") or "", reverse=True)
    return runs


def latest_step_outputs(runs_dir: Path, runbook: str, step: str) -> tuple[str, dict] | None:
    """The outputs of `step` in the latest run of `runbook` where that step succeeded."""
    for state in list_runs(runs_dir):
        if state.get("runbook") != runbook:
            continue
        result = (state.get("steps") or {}).get(step) or {}
        if result.get("status") == "ok":
            return state["run_id"], result.get("outputs") or {}
    return None
