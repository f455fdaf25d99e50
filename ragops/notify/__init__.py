"""Notifications to a Slack-compatible webhook: one implementation for runbooks and operations.

Runbooks' `notify` step sends with `post()` and fails when the webhook does (a runbook asked for
it). Deploys, rollbacks and failovers send their events (`notify.on`) with `event()`, which never
raises: a failing webhook is reported on the progress line and counted in <state dir>/notify.json,
and the operation's outcome stays what it was.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from ragops.errors import OperationFailed

SEVERITY_COLORS = {"info": "#2eb886", "warning": "#daa038", "critical": "#a30200", "error": "#a30200"}
EVENT_SEVERITY = {"start": "info", "succeeded": "info", "paused": "warning", "aborted": "warning",
                  "rolled_back": "critical", "failed": "critical"}
COUNTS_FILE = "notify.json"


def slack_body(message: str, *, severity: str = "info", title: str | None = None, fields: dict | None = None,
               footer: str | None = None) -> dict:
    """A Slack-compatible incoming-webhook body (also accepted by Mattermost and Rocket.Chat)."""
    attachment = {"color": SEVERITY_COLORS.get(severity, "#439fe0"), "title": title or f"[{severity}]",
                  "text": message, "ts": int(time.time()), "mrkdwn_in": ["text"]}
    if fields:
        attachment["fields"] = [{"title": str(k), "value": str(v), "short": len(str(v)) < 40}
                                for k, v in fields.items()]
    if footer:
        attachment["footer"] = footer
    return {"text": f"[{severity}] {title + ': ' if title else ''}{message}", "username": "ragops",
            "attachments": [attachment]}


def post(url: str, payload: dict, timeout: float) -> int:
    """POST the payload; the status code, or OperationFailed (never naming the URL: it is a secret)."""
    import httpx

    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        raise OperationFailed(f"notify: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise OperationFailed(f"notify: webhook answered {response.status_code}: {response.text[:200]}")
    return response.status_code


def wanted(config, name: str) -> bool:
    settings = config.env.notify
    return bool(settings.webhook) and name in settings.on


def event(config, kind: str, name: str, message: str, *, fields: dict | None = None,
          progress: Callable[[str], None] | None = None) -> bool:
    """Send `kind` (deploy | rollback | failover) event `name` now if notify.on lists it; True when sent.
    Never raises: a failure is reported through `progress` and counted. (Deploys and rollbacks
    send from the background queue in outbox.py instead.)"""
    if not wanted(config, name):
        return False
    error = deliver(config, kind, name, message, fields=fields)
    if error and progress:
        progress(f"notify: {kind}.{name} not delivered ({error}); the {kind} goes on")
    return error is None


def deliver(config, kind: str, name: str, message: str, *, fields: dict | None = None) -> str | None:
    """POST one event; None when delivered, else why not (redacted). Counted in notify.json."""
    settings = config.env.notify
    from ragops.secrets import redact

    severity = EVENT_SEVERITY.get(name, "info")
    title = f"{kind} {name.replace('_', ' ')}"
    body = slack_body(message, severity=severity, title=title, fields={"event": f"{kind}.{name}", **(fields or {})},
                      footer=f"ragops · {config.project}/{config.env_name}")
    body["ragops"] = {"kind": kind, "event": name, "project": config.project, "environment": config.env_name,
                      **(fields or {})}
    try:
        url = config.reveal(settings.webhook, "notify.webhook")
        post(url, body, settings.timeout)
    except Exception as exc:  # noqa: BLE001 - a notification never changes an operation's outcome
        error = redact(exc.message if isinstance(exc, OperationFailed) else f"{type(exc).__name__}: {exc}")
        _count(config, ok=False, error=error)
        return error
    _count(config, ok=True)
    return None


def _count(config, *, ok: bool, error: str | None = None) -> None:
    from ragops import journal

    try:
        path = config.state_dir / COUNTS_FILE
        counts = journal.read_json(path) or {"sent": 0, "failed": 0}
        counts["sent" if ok else "failed"] = counts.get("sent" if ok else "failed", 0) + 1
        if error:
            counts["last_error"] = error
        path.parent.mkdir(parents=True, exist_ok=True)
        journal.write_json(path, counts)
    except OSError:
        pass


def counts(config) -> dict:
    from ragops import journal

    return journal.read_json(config.state_dir / COUNTS_FILE) or {"sent": 0, "failed": 0}
