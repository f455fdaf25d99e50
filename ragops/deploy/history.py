"""Deploy history (append-only JSONL) and the journal of the deploy in progress.

The journal (`current.json`) is rewritten atomically at every phase, so a killed ragops leaves a
record of exactly where it stopped; `deploy --resume` and `abort` start from it.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from ragops import journal


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.current_file = directory / "current.json"
        self.history_file = directory / "history.jsonl"
        self.control_file = directory / "control.json"

    # ---- the deploy in progress ----------------------------------------------------------
    def current(self) -> dict | None:
        return journal.read_json(self.current_file)

    def save(self, record: dict) -> None:
        journal.write_json(self.current_file, record)

    def finish(self, record: dict, limit: int = 200) -> None:
        """Move the record into history and clear the journal."""
        journal.append(self.history_file, record)
        self.current_file.unlink(missing_ok=True)
        self.control_file.unlink(missing_ok=True)
        if len(journal.read(self.history_file)) > limit * 2:
            journal.keep_last(self.history_file, limit)

    def history(self, limit: int | None = None) -> list[dict]:
        return journal.read(self.history_file, limit)

    def audit(self, event: str, **fields) -> None:
        """Lock breaks and other out-of-band actions go into history as events."""
        journal.append(self.history_file, {"event": event, "at": now_iso(), **fields})

    # ---- requests from another terminal (promote / abort) ---------------------------------
    def request(self, action: str, by: str) -> None:
        journal.write_json(self.control_file, {"action": action, "by": by, "at": time.time()}, indent=None)

    def pending_request(self) -> dict | None:
        return journal.read_json(self.control_file)

    def clear_request(self) -> None:
        self.control_file.unlink(missing_ok=True)


def last_deploy(platform) -> dict | None:
    journal = Journal(platform.journal_dir())
    current = journal.current()
    if current:
        return {**current, "in_progress": True}
    deploys = [r for r in journal.history() if "version" in r]
    return deploys[-1] if deploys else None


def _verdict(entry: dict) -> str:
    if entry.get("skipped"):
        return "skipped"
    if entry.get("inconclusive"):
        return "inconclusive"
    return ("passed" if entry.get("passed") else "failed") + (" (dry run)" if entry.get("dry_run") else "")


def analysis_lines(analysis: dict) -> list[str]:
    """One analysis verdict as plain text: the totals, then one line per metric (no Python reprs)."""
    def shown(value) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    keys = ("window_s",) if analysis.get("metrics") else ("requests", "error_rate", "p95_ms", "queries",
                                                          "empty_rate", "stable_empty_rate", "window_s")
    totals = [f"{key} {shown(analysis[key])}" for key in keys if analysis.get(key) is not None]
    lines = [", ".join(totals + [_verdict(analysis)])]
    for m in analysis.get("metrics") or []:
        stable = f" (stable {shown(m.get('baseline'))})" if m.get("baseline") is not None else ""
        lines.append(f"metric {m.get('name')}: {shown(m.get('value'))}{stable} {_verdict(m)}"
                     + (f" - {m['why']}" if m.get("why") else ""))
    return lines


def explain(record: dict | None) -> list[str]:
    """Why the last deploy ended the way it did, step by step, for `status --explain`."""
    if not record:
        return ["no deploy recorded yet"]
    lines = [f"deploy {record.get('id')}: {record.get('strategy')} to {record.get('version')} "
             f"by {record.get('who')} -> {record.get('result', 'in progress')}"]
    if record.get("reason"):
        lines.append(f"reason: {record['reason']}")
    for step in record.get("steps", []):
        mark = "ok" if step.get("ok") else ("FAILED" if step.get("ok") is False else "..")
        line = f"  [{mark}] {step.get('name')}"
        if step.get("detail"):
            line += f": {step['detail']}"
        lines.append(line)
        analysis = step.get("analysis")
        if analysis:
            lines += ["        " + text for text in analysis_lines(analysis)]
    if record.get("in_progress"):
        from ragops.deploy.states import next_step

        lines.append(f"this deploy is still in progress or was interrupted (phase {record.get('phase')}): "
                     + next_step(record))
    return lines
