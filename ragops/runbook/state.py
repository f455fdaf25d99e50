"""Run state and the audit log, under <state_dir>/runbook-runs/<run_id>/.

state.json  the run as it stands (step results and outputs, the runbook's content hash), rewritten
            atomically after every step, so `resume` can continue at the failed step.
audit.jsonl append-only: one JSON line per event (timestamp, actor, host, step, parameters and
            outputs with secrets redacted, duration, result).
secrets.json the real values of the inputs and outputs that redaction hides in the two files above
            (names like `token`, registered secrets, passwords in URLs), 0600 and never printed: only
            `resume` reads it, so later steps get the values rather than `***`. Written only when there
            is such a value; deleted when the run succeeds.
"""
from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragops import journal
from ragops.errors import ConfigError
from ragops.secrets import MASK, redact_data, register_secret


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

    @property
    def secrets_path(self) -> Path:
        return self.dir / "secrets.json"

    def save_secrets(self, kept: dict) -> None:
        """Write the real values resume needs ({"inputs": {...}, "steps": {step: {...}}}), 0600."""
        journal.write_private_json(self.secrets_path, kept)

    def load_secrets(self) -> dict:
        """The kept real values (empty when there were none); those with secret-looking names are
        registered again, so redact() hides them in this process too."""
        kept = journal.read_json(self.secrets_path)
        if not isinstance(kept, dict):
            kept = {}
        inputs, steps = dict(kept.get("inputs") or {}), dict(kept.get("steps") or {})
        for values in (inputs, *steps.values()):
            hidden_values(values)
        return {"inputs": inputs, "steps": steps}

    def drop_secrets(self) -> None:
        self.secrets_path.unlink(missing_ok=True)


def hidden_values(values: dict) -> dict:
    """The entries of `values` that redaction changes, with their real (plain JSON) values.

    A value hidden because of its name (`token`, `password`, ...) is registered as a secret, so
    redact() hides it wherever else it turns up (a later step's command, a stdout echoing it);
    then those that merely contain a secret count as hidden too.
    """
    real = journal.jsonable(values)
    for key, value in real.items():
        if redact_data({key: value})[key] == MASK:
            _register(value)
    shown = redact_data(real)
    return {key: value for key, value in real.items() if shown[key] != value}


def _register(value: Any) -> None:
    """Register every string (and number) inside value as a secret."""
    if isinstance(value, dict):
        for item in value.values():
            _register(item)
    elif isinstance(value, list):
        for item in value:
            _register(item)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        register_secret(str(value))


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
