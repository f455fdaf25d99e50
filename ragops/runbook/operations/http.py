"""Over the network: `http` checks, `notify` (a Slack-compatible webhook) and `tls` expiry."""
from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from ragops.errors import GateFailed, OperationFailed
from ragops.notify import post, slack_body
from ragops.runbook.operations.common import duration, router_url, truncate, with_outputs
from ragops.runbook.operations.registry import Context, operation


@operation("http", gate=True)
def http(ctx: Context, *, url: str, method: str = "GET", headers: dict | None = None, json: Any = None,
         body: str | None = None, expect_status: int | list | None = None, expect_body: str | None = None,
         expect_json: Any = None, timeout: str | float | None = None, follow_redirects: bool = False) -> dict:
    """Send an HTTP request; check the status and optionally the body.

    url: absolute, or a path on the environment's router; expect_status: a status or a list
    (default: any 2xx); expect_json: a mapping the JSON body must include; timeout: default 10s.
    """
    import httpx  # here, not at the top: importing httpx costs ~0.2 s (it loads its own CLI)

    url = str(url)
    if url.startswith("/"):
        url = router_url(ctx.require_config()) + url
    wait = ctx.remaining(duration(timeout, "timeout", 10.0))
    started = time.monotonic()
    try:
        response = httpx.request(str(method or "GET").upper(), url,
                                 headers={str(k): str(v) for k, v in (headers or {}).items()},
                                 json=json, content=body, timeout=wait or 10.0,
                                 follow_redirects=bool(follow_redirects))
    except httpx.HTTPError as exc:
        raise OperationFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    text = response.text
    outputs = {"status": response.status_code, "body": truncate(text), "url": url,
               "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
    try:
        outputs["json"] = response.json()
    except ValueError:
        outputs["json"] = None
    if expect_status is None:
        ok, wanted = 200 <= response.status_code < 300, "2xx"
    else:
        allowed = [int(s) for s in (expect_status if isinstance(expect_status, list) else [expect_status])]
        ok, wanted = response.status_code in allowed, " or ".join(map(str, allowed))
    if not ok:
        raise with_outputs(GateFailed(f"{url}: status {response.status_code}, expected {wanted}"), outputs)
    if expect_body is not None and str(expect_body) not in text:
        raise with_outputs(GateFailed(f"{url}: body does not contain {str(expect_body)!r}"), outputs)
    if expect_json is not None:
        missing = _json_mismatch(expect_json, outputs["json"])
        if missing:
            raise with_outputs(GateFailed(f"{url}: JSON body: {missing}"), outputs)
    return outputs


def _json_mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            problem = _json_mismatch(value, actual[key], f"{path}.{key}")
            if problem:
                return problem
        return None
    if expected != actual:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None


@operation("notify")
def notify(ctx: Context, *, message: str, severity: str = "info", title: str | None = None,
           fields: dict | None = None, url: str | None = None) -> dict:
    """Post a message to a webhook (Slack-compatible JSON) via httpx.

    url: default runbooks.notify_webhook; severity: info, warning or critical.
    """
    config = ctx.config
    if not url and config is not None and config.env.runbooks.notify_webhook:
        url = config.reveal(config.env.runbooks.notify_webhook, "runbooks.notify_webhook")
    if not url:
        strict = config.env.runbooks.strict if config is not None else True
        if strict:
            raise OperationFailed("notify: no webhook configured (set runbooks.notify_webhook, or with.url); "
                                  "strict mode does not pass an unsent notification")
        ctx.progress("notify: no webhook configured; not sent (runbooks.strict is off)")
        return {"sent": False, "reason": "not configured"}
    footer = None
    if config is not None:
        footer = (f"ragops · {config.project}/{config.env_name} · runbook {ctx.engine.runbook_name} "
                  f"run {ctx.engine.run_id}")
    payload = slack_body(str(message), severity=str(severity or "info"), title=title, fields=fields, footer=footer)
    status = post(str(url), payload, ctx.remaining(10.0) or 10.0)
    return {"sent": True, "status": status}


@operation("tls", gate=True)
def tls(ctx: Context, *, host: str, port: int = 443, min_days: float = 7, server_name: str | None = None) -> dict:
    """Days until a host's TLS certificate expires; a gate below min_days (default 7)."""
    from cryptography import x509  # only this operation needs it

    host = str(host)
    port = int(port or 443)
    min_days = float(min_days)
    context = ssl.create_default_context()
    context.check_hostname = False          # we read the expiry, trust is not the question here
    context.verify_mode = ssl.CERT_NONE
    try:
        with (socket.create_connection((host, port), timeout=ctx.remaining(10.0) or 10.0) as sock,
              context.wrap_socket(sock, server_hostname=str(server_name or host)) as conn):
            der = conn.getpeercert(binary_form=True)
    except OSError as exc:
        raise OperationFailed(f"tls: {host}:{port}: {exc}") from None
    if der is None:
        raise OperationFailed(f"tls: {host}:{port}: the server sent no certificate")
    cert = x509.load_der_x509_certificate(der)
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=UTC)
    days = (not_after - datetime.now(UTC)).total_seconds() / 86400
    outputs = {"host": host, "port": port, "days_left": round(days, 2), "not_after": not_after.isoformat(),
               "subject": cert.subject.rfc4514_string()}
    if days < min_days:
        raise with_outputs(GateFailed(f"tls: {host}:{port} certificate expires in {days:.1f} days "
                                      f"(minimum {min_days:g})"), outputs)
    return outputs
