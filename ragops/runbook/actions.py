"""Step actions: built-ins (shell, http, sql, assert, notify, approval, manual, tls, sleep,
runbook, ...) and every ragops operation, called as a Python function (never through the CLI).

Operations are imported lazily: an action names the functions it needs ("module:function"), and
validation fails with a clear message when this installation does not have one yet — a step is
never a silent no-op.

An action's `run(ctx, params)` returns an outputs dict. It raises GateFailed when a check did not
pass (exit 3), NotApproved when an approval is missing or denied (exit 5), anything else when the
step broke (exit 1).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import signal
import ssl
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ragops.errors import ConfigError, GateFailed, OperationFailed, RagopsError
from ragops.runbook import expr

REPO_ROOT = Path(__file__).resolve().parents[2]


class StepTimeout(RagopsError):
    """The step ran out of time."""


@dataclass
class ActionContext:
    """What an action sees: the config, its step, the expression context and the engine."""
    config: Any
    step: Any
    context: dict
    engine: Any
    progress: Callable[[str], None]
    deadline: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def remaining(self, default: float | None = None) -> float | None:
        if self.deadline is None:
            return default
        left = max(self.deadline - time.monotonic(), 0.0)
        return left if default is None else min(left, default)

    def sleep(self, seconds: float) -> None:
        """A sleep that stops early (with StepTimeout) when the step is cancelled or times out."""
        end = time.monotonic() + seconds
        while True:
            if self.cancelled.is_set():
                raise StepTimeout("cancelled")
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                raise StepTimeout("timed out while waiting")
            if now >= end:
                return
            self.cancelled.wait(min(0.2, end - now))

    def require_config(self):
        if self.config is None:
            raise ConfigError(f"action {self.step.action!r} needs a ragops.yaml (use --config)")
        return self.config


@dataclass
class Action:
    name: str
    summary: str
    run: Callable[[ActionContext, dict], dict]
    params: dict[str, str] = field(default_factory=dict)     # name -> description
    required: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()          # "module:function" the action calls
    gate: bool = False                   # a failure is a failed gate (exit 3) by default
    raw: tuple[str, ...] = ()            # parameters kept as expressions (not rendered)
    interactive: str | None = None       # "approve" or "ack"
    mutating: bool = False               # changes something (shown in dry-run)
    any_params: bool = False             # accepts arbitrary parameters


ACTIONS: dict[str, Action] = {}


def action(name: str, summary: str, **kwargs):
    def wrap(fn):
        ACTIONS[name] = Action(name=name, summary=summary, run=fn, **kwargs)
        return fn
    return wrap


# ---- helpers -----------------------------------------------------------------------------

def missing_operation(spec: str) -> str | None:
    """None when `module:function` exists; else a message saying what is missing."""
    module_name, _, func = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return f"{module_name}.{func}"
        return f"{module_name}.{func} (importing it failed: {exc})"
    except Exception as exc:  # noqa: BLE001 - a broken module is reported, not raised
        return f"{module_name}.{func} (importing it failed: {type(exc).__name__}: {exc})"
    if not callable(getattr(module, func, None)):
        return f"{module_name}.{func}"
    return None


def operation(spec: str) -> Callable:
    missing = missing_operation(spec)
    if missing:
        raise OperationFailed(f"this installation does not have {missing}")
    module_name, _, func = spec.partition(":")
    return getattr(importlib.import_module(module_name), func)


def call_operation(ctx: ActionContext, spec: str, *args, **kwargs) -> Any:
    """Call a ragops operation, passing `progress` when it takes one and only the keyword
    arguments it accepts; a non-None argument it does not accept is an error, never dropped."""
    fn = operation(spec)
    try:
        signature = inspect.signature(fn)
        accepted = signature.parameters
        var_kw = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    except (TypeError, ValueError):
        accepted, var_kw = {}, True
    call_kwargs = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in accepted or var_kw:
            call_kwargs[key] = value
        else:
            raise OperationFailed(f"{spec.replace(':', '.')} does not take {key!r} "
                                  f"(it takes: {', '.join(accepted)})")
    if "progress" in accepted and "progress" not in call_kwargs:
        call_kwargs["progress"] = ctx.progress
    return fn(*args, **call_kwargs)


def to_outputs(value: Any) -> dict:
    """Turn an operation's result (dataclass, dict, object with to_dict, scalar) into outputs."""
    from ragops.output import to_jsonable

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


def _flag(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None


def _duration(value: Any, name: str, default: float | None = None) -> float | None:
    from ragops.durations import parse_duration

    if value is None or value == "":
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def router_url(config) -> str:
    try:
        from ragops.platforms import get_platform

        return get_platform(config).router_url().rstrip("/")
    except Exception:  # noqa: BLE001 - fall back to the configured listen address
        host, _, port = config.router.listen.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"


def _truncate(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _dsn(ctx: ActionContext, params: dict) -> str:
    from ragops import secrets

    dsn = params.get("dsn")
    if dsn:
        if secrets.is_reference(dsn):
            return ctx.require_config().reveal(dsn, f"runbook step {ctx.step.id}.dsn") if ctx.config else \
                secrets.resolve(dsn, key=f"step {ctx.step.id}: dsn")
        return str(dsn)
    from ragops.db.connect import node_dsn

    return node_dsn(ctx.require_config(), params.get("node"), dbname=params.get("dbname"))


# ---- built-in actions --------------------------------------------------------------------

@action("shell", "Run a command; fails when it exits non-zero (or not with expect_exit).",
        params={"command": "a string (run by /bin/sh) or a list of arguments", "cwd": "working directory",
                "env": "extra environment variables", "expect_exit": "expected exit status (default 0)"},
        required=("command",), mutating=True)
def _shell(ctx: ActionContext, params: dict) -> dict:
    command = params["command"]
    shell = isinstance(command, str)
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (params.get("env") or {}).items()})
    cwd = params.get("cwd") or (str(ctx.config.base_dir) if ctx.config is not None else None)
    started = time.monotonic()
    proc = subprocess.Popen(command if shell else [str(a) for a in command], shell=shell, cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=ctx.remaining())
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise StepTimeout(f"command still running after {time.monotonic() - started:.1f}s; killed it")
    except BaseException:
        _kill_group(proc)
        raise
    outputs = {"exit_code": proc.returncode, "stdout": _truncate(stdout.strip()),
               "stderr": _truncate(stderr.strip())}
    expected = int(params.get("expect_exit", 0))
    if proc.returncode != expected:
        detail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or [""]
        error = OperationFailed(f"command exited {proc.returncode} (expected {expected}): {detail[0][:300]}")
        error.outputs = outputs
        raise error
    return outputs


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the command we started and its children (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@action("http", "Send an HTTP request; check the status and optionally the body.",
        params={"url": "absolute, or a path on the environment's router", "method": "GET by default",
                "headers": "mapping", "json": "a JSON body", "body": "a text body",
                "expect_status": "a status or list of statuses (default: any 2xx)",
                "expect_body": "text the body must contain", "expect_json": "a mapping the JSON body must include",
                "timeout": "seconds (default 10)"},
        required=("url",), gate=True)
def _http(ctx: ActionContext, params: dict) -> dict:
    import httpx

    url = str(params["url"])
    if url.startswith("/"):
        url = router_url(ctx.require_config()) + url
    timeout = ctx.remaining(_duration(params.get("timeout"), "timeout", 10.0))
    started = time.monotonic()
    try:
        response = httpx.request(str(params.get("method") or "GET").upper(), url,
                                 headers={str(k): str(v) for k, v in (params.get("headers") or {}).items()},
                                 json=params.get("json"), content=params.get("body"),
                                 timeout=timeout or 10.0, follow_redirects=bool(params.get("follow_redirects", False)))
    except httpx.HTTPError as exc:
        raise OperationFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    body = response.text
    outputs = {"status": response.status_code, "body": _truncate(body), "url": url,
               "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
    try:
        outputs["json"] = response.json()
    except ValueError:
        outputs["json"] = None
    expected = params.get("expect_status")
    if expected is None:
        ok = 200 <= response.status_code < 300
        wanted = "2xx"
    else:
        allowed = [int(s) for s in (expected if isinstance(expected, list) else [expected])]
        ok = response.status_code in allowed
        wanted = " or ".join(map(str, allowed))
    if not ok:
        error = GateFailed(f"{url}: status {response.status_code}, expected {wanted}")
        error.outputs = outputs
        raise error
    if params.get("expect_body") is not None and str(params["expect_body"]) not in body:
        error = GateFailed(f"{url}: body does not contain {str(params['expect_body'])!r}")
        error.outputs = outputs
        raise error
    if params.get("expect_json") is not None:
        missing = _json_mismatch(params["expect_json"], outputs["json"])
        if missing:
            error = GateFailed(f"{url}: JSON body: {missing}")
            error.outputs = outputs
            raise error
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


@action("sql", "Run SQL on a database node; optionally compare the first value with `expect`.",
        params={"query": "the SQL", "node": "database node name (default: the primary)",
                "dbname": "database (default: the configured one)", "dsn": "a conninfo or secret reference instead",
                "expect": "the expected first value of the first row", "expect_rows": "the expected number of rows"},
        required=("query",), gate=True, mutating=True)
def _sql(ctx: ActionContext, params: dict) -> dict:
    from ragops.db.connect import connect

    dsn = _dsn(ctx, params)
    try:
        with connect(dsn, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute(str(params["query"]))
                rows = cur.fetchall() if cur.description else []
                rowcount = cur.rowcount
    except RagopsError:
        raise
    except Exception as exc:  # psycopg errors: one line, secrets redacted later
        raise OperationFailed(f"sql: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    from ragops.output import to_jsonable

    plain = [[_plain(v) for v in row] for row in rows[:1000]]
    outputs = {"rows": to_jsonable(plain), "rowcount": rowcount, "value": plain[0][0] if plain and plain[0] else None}
    if "expect" in params:
        if not _same(outputs["value"], params["expect"]):
            error = GateFailed(f"sql: expected {params['expect']!r}, got {outputs['value']!r}")
            error.outputs = outputs
            raise error
    if "expect_rows" in params and len(rows) != int(params["expect_rows"]):
        error = GateFailed(f"sql: expected {params['expect_rows']} rows, got {len(rows)}")
        error.outputs = outputs
        raise error
    return outputs


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    try:
        return float(left) == float(right)
    except (TypeError, ValueError):
        return str(left) == str(right)


@action("assert", "Check one or more expressions over inputs and step outputs (a gate).",
        params={"that": "an expression, or a list of expressions, that must all be true",
                "message": "what failed, for people"},
        required=("that",), gate=True, raw=("that",))
def _assert(ctx: ActionContext, params: dict) -> dict:
    checks = params["that"] if isinstance(params["that"], list) else [params["that"]]
    results = []
    for check in checks:
        text = str(check).strip()
        if text.startswith("{{") and text.endswith("}}"):
            text = text[2:-2].strip()
        value = expr.evaluate(text, ctx.context)
        results.append({"expression": text, "passed": bool(value)})
        if not value:
            values = {".".join(map(str, ref)): expr.lookup(ctx.context, ref, strict=False)
                      for ref in expr.references(expr.parse(text))}
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            message = params.get("message")
            message = expr.render(message, ctx.context) if isinstance(message, str) else message
            error = GateFailed(f"{message + ': ' if message else ''}{text} is false"
                               + (f" ({shown})" if shown else ""))
            error.outputs = {"checks": results}
            raise error
    return {"checks": results}


SEVERITY_COLORS = {"info": "#2eb886", "warning": "#daa038", "critical": "#a30200", "error": "#a30200"}


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


@action("notify", "Post a message to a webhook (Slack-compatible JSON) via httpx.",
        params={"message": "the text", "severity": "info, warning or critical", "title": "a short title",
                "fields": "a mapping shown as fields", "url": "webhook URL (default: runbooks.notify_webhook)"},
        required=("message",))
def _notify(ctx: ActionContext, params: dict) -> dict:
    import httpx

    url = params.get("url")
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
        footer = f"ragops · {config.project}/{config.env_name} · runbook {ctx.engine.runbook_name} run {ctx.engine.run_id}"
    body = slack_body(str(params["message"]), severity=str(params.get("severity") or "info"),
                      title=params.get("title"), fields=params.get("fields"), footer=footer)
    try:
        response = httpx.post(str(url), json=body, timeout=ctx.remaining(10.0) or 10.0)
    except httpx.HTTPError as exc:
        raise OperationFailed(f"notify: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 300:
        raise OperationFailed(f"notify: webhook answered {response.status_code}: {response.text[:200]}")
    return {"sent": True, "status": response.status_code}


@action("approval", "Ask a person to approve; without a terminal it needs --approve STEP (else exit 5).",
        params={"message": "the question", "approvers": "who may approve (informational)"},
        interactive="approve")
def _approval(ctx: ActionContext, params: dict) -> dict:
    question = str(params.get("message") or ctx.step.name)
    return ctx.engine.ask(ctx.step, question, kind="approve")


@action("manual", "A checklist item a person must confirm; without a terminal it needs --ack STEP.",
        params={"item": "what must be true", "instructions": "how to check it", "checklist": "a list of items"},
        interactive="ack")
def _manual(ctx: ActionContext, params: dict) -> dict:
    item = str(params.get("item") or ctx.step.name)
    extra = params.get("checklist") or []
    if params.get("instructions"):
        ctx.progress(str(params["instructions"]))
    for line in extra:
        ctx.progress(f"  [ ] {line}")
    return ctx.engine.ask(ctx.step, item, kind="ack")


@action("tls", "Days until a host's TLS certificate expires; a gate below min_days (default 7).",
        params={"host": "hostname", "port": "443 by default", "min_days": "fail below this (default 7)",
                "server_name": "SNI name (default: host)"},
        required=("host",), gate=True)
def _tls(ctx: ActionContext, params: dict) -> dict:
    from cryptography import x509

    host = str(params["host"])
    port = int(params.get("port") or 443)
    min_days = float(params.get("min_days", 7))
    context = ssl.create_default_context()
    context.check_hostname = False          # we read the expiry, trust is not the question here
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=ctx.remaining(10.0) or 10.0) as sock:
            with context.wrap_socket(sock, server_hostname=str(params.get("server_name") or host)) as tls:
                der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise OperationFailed(f"tls: {host}:{port}: {exc}") from None
    cert = x509.load_der_x509_certificate(der)
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=timezone.utc)
    days = (not_after - datetime.now(timezone.utc)).total_seconds() / 86400
    outputs = {"host": host, "port": port, "days_left": round(days, 2), "not_after": not_after.isoformat(),
               "subject": cert.subject.rfc4514_string()}
    if days < min_days:
        error = GateFailed(f"tls: {host}:{port} certificate expires in {days:.1f} days (minimum {min_days:g})")
        error.outputs = outputs
        raise error
    return outputs


@action("sleep", "Wait a while (e.g. let metrics settle).", params={"duration": "e.g. 30s"}, required=("duration",))
def _sleep(ctx: ActionContext, params: dict) -> dict:
    seconds = _duration(params["duration"], "duration")
    ctx.sleep(seconds)
    return {"slept_seconds": seconds}


@action("runbook", "Run another runbook as one step; its outputs become this step's outputs.",
        params={"name": "the runbook", "inputs": "a mapping of its inputs"}, required=("name",))
def _runbook(ctx: ActionContext, params: dict) -> dict:
    return ctx.engine.run_nested(ctx.step, str(params["name"]), params.get("inputs") or {})


@action("security.scan", "Run the configured security scan (runbooks.security_scan); unset fails in strict mode.",
        params={"command": "override the configured command"}, gate=True)
def _security_scan(ctx: ActionContext, params: dict) -> dict:
    config = ctx.config
    command = params.get("command") or (config.env.runbooks.security_scan if config is not None else None)
    if not command:
        strict = config.env.runbooks.strict if config is not None else True
        if strict:
            raise GateFailed("security scan is not configured (runbooks.security_scan); "
                             "in strict mode 'not configured' is a failure, not a pass")
        ctx.progress("security scan not configured; skipped (runbooks.strict is off)")
        return {"configured": False, "passed": None}
    try:
        outputs = _shell(ctx, {"command": command})
    except OperationFailed as exc:
        error = GateFailed(f"security scan failed: {exc.message}")
        error.outputs = getattr(exc, "outputs", {})
        raise error from None
    return {"configured": True, "passed": True, **outputs}


@action("monitoring.render", "Render the alert rules and the Grafana dashboard from templates/ and check them.",
        params={"dest": "output folder (default <state_dir>/monitoring)"}, gate=True, mutating=True)
def _monitoring_render(ctx: ActionContext, params: dict) -> dict:
    import shutil

    import yaml

    templates = _templates_dir(ctx.config)
    dest = Path(params.get("dest") or (ctx.require_config().state_dir / "monitoring"))
    files: list[str] = []
    alerts: list[str] = []
    rules = sorted((templates / "alerts").glob("*.y*ml"))
    dashboards = sorted((templates / "grafana").glob("*.json"))
    if not rules:
        raise GateFailed(f"no alert rule files under {templates / 'alerts'}")
    if not dashboards:
        raise GateFailed(f"no Grafana dashboard under {templates / 'grafana'}")
    (dest / "alerts").mkdir(parents=True, exist_ok=True)
    (dest / "grafana").mkdir(parents=True, exist_ok=True)
    for path in rules:
        data = yaml.safe_load(path.read_text())
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" not in rule or "expr" not in rule:
                    raise GateFailed(f"{path}: a rule without alert/expr")
                alerts.append(rule["alert"])
        shutil.copy2(path, dest / "alerts" / path.name)
        files.append(str(dest / "alerts" / path.name))
    for path in dashboards:
        json.loads(path.read_text())
        shutil.copy2(path, dest / "grafana" / path.name)
        files.append(str(dest / "grafana" / path.name))
    missing = [a for a in GUIDE_ALERTS if a not in alerts]
    if missing:
        raise GateFailed(f"alert rules missing for the guide's alerting strategy: {', '.join(missing)}")
    return {"dest": str(dest), "files": files, "alerts": alerts}


GUIDE_ALERTS = ("RagApiDown", "RagDatabaseConnectionFailure", "RagHighErrorRate", "RagDiskSpaceHigh",
                "RagSlowResponses", "RagMemoryHigh", "RagBackupFailed", "RagTlsCertificateExpiring")


def _templates_dir(config) -> Path:
    if config is not None and (config.base_dir / "templates" / "alerts").is_dir():
        return config.base_dir / "templates"
    return REPO_ROOT / "templates"


@action("metrics.watch", "Scrape the service's /metrics over a window; gate on error rate and p95 latency.",
        params={"window": "how long to watch (default 30s)", "interval": "between scrapes (default 5s)",
                "max_error_rate": "share of 5xx answers (default: deploy.analysis.max_error_rate)",
                "max_p95_ms": "p95 latency in ms (default: deploy.analysis.max_p95_latency_ms)",
                "min_requests": "fewer requests than this is 'no data' (default 0: allowed)",
                "urls": "metrics URLs (default: every live color's /metrics)"},
        gate=True)
def _metrics_watch(ctx: ActionContext, params: dict) -> dict:
    from ragops.runbook import metrics

    config = ctx.config
    window = _duration(params.get("window"), "window", 30.0)
    interval = _duration(params.get("interval"), "interval", 5.0)
    analysis = config.deploy.analysis if config is not None else None
    max_error_rate = _number(params.get("max_error_rate"), "max_error_rate")
    if max_error_rate is None and analysis is not None:
        max_error_rate = analysis.max_error_rate
    max_p95 = _number(params.get("max_p95_ms"), "max_p95_ms")
    if max_p95 is None and analysis is not None:
        max_p95 = analysis.max_p95_latency_ms
    urls = params.get("urls")
    if not urls:
        urls = metrics.live_metrics_urls(ctx.require_config())
    if isinstance(urls, str):
        urls = [urls]
    first = metrics.scrape_all(urls)
    samples = 1
    end = time.monotonic() + window
    while time.monotonic() < end:
        ctx.sleep(min(interval, max(end - time.monotonic(), 0)))
        current = metrics.scrape_all(urls)
        samples += 1
        stats = metrics.delta(first, current)
        ctx.progress(f"{stats['requests']} requests, error rate {stats['error_rate']:.2%}, "
                     f"p95 {stats['p95_ms'] if stats['p95_ms'] is not None else '-'} ms")
    stats = metrics.delta(first, metrics.scrape_all(urls) if samples == 1 else current)
    stats.update({"window_seconds": window, "urls": urls})
    problems = []
    min_requests = int(params.get("min_requests") or 0)
    if stats["requests"] < min_requests:
        problems.append(f"only {stats['requests']} requests in the window (min_requests {min_requests})")
    if max_error_rate is not None and stats["error_rate"] > max_error_rate:
        problems.append(f"error rate {stats['error_rate']:.2%} is above {max_error_rate:.2%}")
    if max_p95 is not None and stats["p95_ms"] is not None and stats["p95_ms"] > max_p95:
        problems.append(f"p95 {stats['p95_ms']:.0f} ms is above {max_p95:.0f} ms")
    if problems:
        error = GateFailed("metrics: " + "; ".join(problems))
        error.outputs = stats
        raise error
    return stats


@action("baseline", "Read a step's outputs from the latest successful run of a runbook (e.g. pre-deploy's load test).",
        params={"runbook": "runbook name", "step": "step id", "required": "fail when there is none (default false)"},
        required=("runbook", "step"))
def _baseline(ctx: ActionContext, params: dict) -> dict:
    from ragops.runbook.state import latest_step_outputs

    found = latest_step_outputs(ctx.engine.runs_dir, str(params["runbook"]), str(params["step"]))
    if found is None:
        if _flag(params.get("required")):
            raise GateFailed(f"no successful {params['runbook']} run with step {params['step']!r} to compare with")
        return {"found": False}
    run_id, outputs = found
    return {"found": True, "run_id": run_id, **outputs}


@action("schedule", "Record a follow-up (e.g. the 24-48 h watch) with a ready-to-install cron line.",
        params={"name": "what is scheduled", "after": "when to start (e.g. 1h)", "until": "when to stop (e.g. 48h)",
                "command": "what to run", "every": "cron interval in minutes (default 60)"},
        required=("name", "command"), mutating=True)
def _schedule(ctx: ActionContext, params: dict) -> dict:
    config = ctx.require_config()
    now = time.time()
    after = _duration(params.get("after"), "after", 0.0)
    until = _duration(params.get("until"), "until", 48 * 3600.0)
    every = int(params.get("every") or 60)
    record = {"name": str(params["name"]), "command": str(params["command"]),
              "starts_at": datetime.fromtimestamp(now + after, timezone.utc).isoformat(),
              "ends_at": datetime.fromtimestamp(now + until, timezone.utc).isoformat(),
              "cron": f"*/{every} * * * * {params['command']}" if every < 60 else f"0 * * * * {params['command']}",
              "run_id": ctx.engine.run_id}
    folder = config.state_dir / "schedules"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['name']}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "file": str(path)}


@action("rollback.check", "Rollback readiness: the live color is healthy with a known version and the rollback "
        "operation exists.", params={"require_previous": "also require a previous version kept warm"},
        needs=("ragops.deploy.engine:rollback", "ragops.platforms:get_platform"), gate=True)
def _rollback_check(ctx: ActionContext, params: dict) -> dict:
    from ragops.platforms import get_platform

    platform = get_platform(ctx.require_config())
    colors = platform.colors()
    live = [c for c in colors if c.running and c.weight > 0]
    standby = [c for c in colors if c.version and c not in live]
    outputs = {"live": [dataclasses.asdict(c) for c in live], "previous_versions": [c.version for c in standby]}
    if not live:
        raise GateFailed("rollback readiness: no live color is serving traffic")
    unhealthy = [c.color for c in live if c.healthy is False]
    if unhealthy:
        raise GateFailed(f"rollback readiness: live color(s) {', '.join(unhealthy)} unhealthy")
    if _flag(params.get("require_previous")) and not standby:
        raise GateFailed("rollback readiness: no previous version kept (deploy.keep_previous)")
    outputs["live_version"] = live[0].version
    return outputs


# ---- ragops operations -------------------------------------------------------------------

def _deploy_outcome(what: str, outputs: dict) -> dict:
    """DeployResult.result: succeeded | rolled_back | aborted | paused | failed."""
    result = outputs.get("result")
    if result in ("succeeded", "paused", "planned", None):
        return outputs
    error_class = GateFailed if result == "rolled_back" else OperationFailed
    error = error_class(f"{what} {outputs.get('version', '')}: {result}"
                        + (f" ({outputs['reason']})" if outputs.get("reason") else ""))
    error.outputs = outputs
    raise error


def _op_deploy(ctx, p):
    steps = p.get("steps")
    if isinstance(steps, str):
        steps = [int(x) for x in steps.split(",") if x.strip()]
    return _deploy_outcome("deploy", to_outputs(call_operation(
        ctx, "ragops.deploy.engine:deploy", ctx.require_config(), str(p["version"]),
        strategy=p.get("strategy") or None, steps=steps,
        step_pause=_duration(p.get("step_pause"), "step_pause"),
        pause_at=int(p["pause_at"]) if p.get("pause_at") not in (None, "") else None, env=p.get("env"))))


def _op_rollback(ctx, p):
    return _deploy_outcome("rollback", to_outputs(call_operation(
        ctx, "ragops.deploy.engine:rollback", ctx.require_config(), to_version=p.get("to_version") or None)))


def _op_smoke(ctx, p):
    report = call_operation(ctx, "ragops.smoke:run_smoke", ctx.require_config(), url=p.get("url") or None,
                            color=p.get("color") or None, expect_version=p.get("expect_version") or None)
    outputs = to_outputs(report)
    if not getattr(report, "passed", outputs.get("passed")):
        failed = [c for c in outputs.get("checks", []) if isinstance(c, dict) and not c.get("passed", c.get("ok", True))]
        names = ", ".join(str(c.get("name", "?")) for c in failed) or "see checks"
        error = GateFailed(f"smoke tests failed: {names}")
        error.outputs = outputs
        raise error
    return outputs


def _op_loadtest(ctx, p):
    config = ctx.config
    url = p.get("url") or router_url(ctx.require_config())
    api_key = p.get("api_key")
    if api_key is None and config is not None:
        from ragops.db.connect import api_keys

        try:
            api_key = api_keys(config)[0]
        except RagopsError:
            api_key = None
    rps = _number(p.get("rps"), "rps")
    duration = _duration(p.get("duration"), "duration", 10.0)
    kwargs = {"api_key": api_key, "path": p.get("path")}
    stats = call_operation(ctx, "ragops.loadgen:run_load", str(url), rps, duration, **kwargs)
    outputs = to_outputs(stats)
    problems = []
    max_p95 = _number(p.get("max_p95_ms"), "max_p95_ms")
    max_err = _number(p.get("max_error_rate"), "max_error_rate")
    min_rps = _number(p.get("min_rps"), "min_rps")
    p95 = outputs.get("p95_ms")
    error_rate = outputs.get("error_rate")
    achieved = outputs.get("rps")
    if max_p95 is not None and p95 is not None and p95 > max_p95:
        problems.append(f"p95 {p95:.0f} ms is above {max_p95:.0f} ms")
    if max_err is not None and error_rate is not None and error_rate > max_err:
        problems.append(f"error rate {error_rate:.2%} is above {max_err:.2%}")
    if min_rps is not None and achieved is not None and achieved < min_rps:
        problems.append(f"achieved {achieved:.1f} rps, below {min_rps:.1f}")
    if problems:
        error = GateFailed("load test: " + "; ".join(problems))
        error.outputs = outputs
        raise error
    return outputs


def _op_backup_create(ctx, p):
    return to_outputs(call_operation(ctx, "ragops.db.backup:create_backup", ctx.require_config(), label=p.get("label")))


def _op_backup_verify(ctx, p):
    result = call_operation(ctx, "ragops.db.backup:verify_backup", ctx.require_config(),
                            backup_id=str(p.get("backup_id") or "latest"), restore=_flag(p.get("restore")) or None)
    outputs = to_outputs(result)
    if not outputs.get("ok", True):
        failure = getattr(result, "failure", None) or "verification failed"
        error = GateFailed(f"backup {outputs.get('backup_id')}: {failure}")
        error.outputs = outputs
        raise error
    return outputs


def _op_backup_restore(ctx, p):
    config = ctx.require_config()
    target = p.get("target_dsn")
    if not target:
        # into a named (scratch) database, else the environment's own database on the primary
        from ragops.db.connect import node_dsn

        target = node_dsn(config, p.get("node") or None, dbname=str(p.get("target_db") or config.database.name))
    return to_outputs(call_operation(ctx, "ragops.db.backup:restore_backup", config,
                                     backup_id=str(p.get("backup_id") or "latest"), target_dsn=target,
                                     clean=_flag(p.get("clean")) or None, create=_flag(p.get("create")) or None))


def _op_backup_show(ctx, p):
    data = call_operation(ctx, "ragops.db.backup:show_backup", ctx.require_config(), str(p.get("backup_id") or "latest"))
    outputs = to_outputs(data)
    manifest = outputs.get("manifest") or {}
    outputs.update({"id": manifest.get("id"), "row_counts": manifest.get("row_counts") or {},
                    "finished_at": manifest.get("finished_at")})
    return outputs


def _op_backup_check(ctx, p):
    result = call_operation(ctx, "ragops.db.backup:check_backups", ctx.require_config(),
                            _duration(p.get("max_age"), "max_age", 26 * 3600.0),
                            metrics_file=p.get("metrics_file"))
    outputs = to_outputs(result)
    for key in ("ok", "passed", "fresh", "healthy"):
        if key in outputs and not outputs[key]:
            error = GateFailed(f"backups: {outputs.get('message') or outputs.get('problems') or 'check failed'}")
            error.outputs = outputs
            raise error
    return outputs


def _op_db_promote(ctx, p):
    return to_outputs(call_operation(ctx, "ragops.db.replication:promote", ctx.require_config(), str(p["node"]),
                                     max_lag=int(p["max_lag"]) if p.get("max_lag") not in (None, "") else None,
                                     force=_flag(p.get("force")) or None,
                                     confirm_down=_flag(p.get("confirm_down")) or None))


def _op_db_migrate(ctx, p):
    config = ctx.config
    dsn = p.get("dsn")
    if not dsn:
        from ragops.db.connect import node_dsn

        dsn = node_dsn(ctx.require_config(), p.get("node"), dbname=p.get("dbname"))
    migrations_dir = p.get("migrations_dir")
    if not migrations_dir and config is not None:
        candidate = config.resolve_path(config.service.path) / "migrations"
        if candidate.is_dir():
            migrations_dir = str(candidate)
    if not migrations_dir:
        migrations_dir = str(operation("ragops.db.migrate:default_migrations_dir")())
    applied = call_operation(ctx, "ragops.db.migrate:apply_migrations", dsn, Path(migrations_dir),
                             app_user=p.get("app_user") or None)
    return {"applied": list(applied or []), "count": len(applied or []), "migrations_dir": str(migrations_dir)}


def _op_dns_failover(ctx, p):
    return to_outputs(call_operation(ctx, "ragops.dns.route53:failover", ctx.require_config(),
                                     to=str(p.get("to") or "secondary")))


def _op_region_failover(ctx, p):
    outputs = to_outputs(call_operation(ctx, "ragops.failover:region_failover", ctx.require_config(),
                                        to=p.get("to") or None, failure_time=p.get("failure_time") or None,
                                        confirm_down=_flag(p.get("confirm_down")) or None,
                                        skip_service=_flag(p.get("skip_service")) or None))
    if outputs.get("passed") is False:
        error = OperationFailed("region failover did not pass: " + "; ".join(outputs.get("notes") or []))
        error.outputs = outputs
        raise error
    return outputs


def _op_maintenance(ctx, p):
    platform = call_operation(ctx, "ragops.platforms:get_platform", ctx.require_config())
    on = _flag(p.get("enabled"), True)
    platform.set_maintenance(on)
    return {"maintenance": on}


def _op_service_status(ctx, p):
    platform = call_operation(ctx, "ragops.platforms:get_platform", ctx.require_config())
    colors = [dataclasses.asdict(c) for c in platform.colors()]
    live = [c for c in colors if c["running"] and c["weight"] > 0]
    return {"colors": colors, "live": [c["color"] for c in live],
            "live_version": live[0]["version"] if live else None}


def _op_db_topology(ctx, p):
    statuses = call_operation(ctx, "ragops.db.replication:topology", ctx.require_config())
    nodes = [to_outputs(s) for s in statuses]
    primaries = [n["name"] for n in nodes if n.get("role") == "primary" and not n.get("fenced")]
    return {"nodes": nodes, "primary": primaries[0] if primaries else None,
            "max_lag_bytes": max([n.get("lag_bytes") or 0 for n in nodes] + [0]),
            "max_lag_seconds": max([n.get("lag_seconds") or 0 for n in nodes] + [0])}


def _op_service_stop(ctx, p):
    config = ctx.require_config()
    platform = call_operation(ctx, "ragops.platforms:get_platform", config)
    drain = _duration(p.get("drain_timeout"), "drain_timeout", config.deploy.drain_timeout)
    stopped = []
    for state in platform.colors():
        if not state.running:
            continue
        platform.stop_color(state.color, drain_timeout=drain, progress=ctx.progress)
        stopped.append({"color": state.color, "version": state.version, "deploy_id": state.deploy_id,
                        "env": state.env or {}, "weight": state.weight})
    return {"stopped": stopped, "count": len(stopped)}


def _op_service_start(ctx, p):
    config = ctx.require_config()
    platform = call_operation(ctx, "ragops.platforms:get_platform", config)
    wait_ready = operation("ragops.readiness:wait_ready")
    colors = p.get("colors") or []
    if not isinstance(colors, list) or not colors:
        raise OperationFailed("service.start: no colors to start (expected the `stopped` output of service.stop)")
    started = []
    for entry in colors:
        color = entry["color"]
        platform.start_color(color, entry.get("version") or config.service.version,
                             deploy_id=entry.get("deploy_id") or f"runbook-{ctx.engine.run_id}",
                             env=entry.get("env") or None, progress=ctx.progress)
        seconds = wait_ready(platform, color, ctx.remaining(config.service.startup_timeout)
                             or config.service.startup_timeout, ctx.progress)
        started.append({"color": color, "version": entry.get("version"), "ready_seconds": seconds})
    platform.refresh_backends()
    return {"started": started}


def _op_service_restart(ctx, p):
    """Restart the live colors in place (same version, same deploy id), one at a time."""
    config = ctx.require_config()
    platform = call_operation(ctx, "ragops.platforms:get_platform", config)
    restarted = []
    for state in platform.colors():
        if not state.running or (state.weight <= 0 and not _flag(p.get("all"))):
            continue
        ctx.progress(f"restarting {state.color} ({state.version})")
        platform.start_color(state.color, state.version or config.service.version,
                             deploy_id=state.deploy_id or f"restart-{ctx.engine.run_id}", env=state.env or None)
        restarted.append(state.color)
    if not restarted:
        raise OperationFailed("no running color to restart")
    platform.refresh_backends()
    # wait until they answer their health check again
    import httpx

    deadline = time.monotonic() + (ctx.remaining(config.service.startup_timeout) or config.service.startup_timeout)
    for color in restarted:
        url = platform.color_url(color).rstrip("/") + config.service.readiness_path
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise OperationFailed(f"{color} did not become ready after the restart ({url})")
            ctx.sleep(0.5)
    return {"restarted": restarted}


for _name, _fn, _needs, _params, _required, _gate, _summary in [
    ("deploy", _op_deploy, ("ragops.deploy.engine:deploy",),
     {"version": "", "strategy": "blue-green or canary", "steps": "canary weights", "step_pause": "",
      "pause_at": "", "env": "extra service environment"}, ("version",), False,
     "Deploy a version with the configured (or given) strategy."),
    ("rollback", _op_rollback, ("ragops.deploy.engine:rollback",), {"to_version": "default: the previous one"}, (),
     False, "Roll back to the previous (or given) version."),
    ("smoke", _op_smoke, ("ragops.smoke:run_smoke",), {"url": "", "color": "", "expect_version": ""}, (), True,
     "Run the smoke tests; a gate."),
    ("loadtest", _op_loadtest, ("ragops.loadgen:run_load",),
     {"url": "default: the router", "rps": "", "duration": "", "path": "", "api_key": "default: the service key",
      "max_p95_ms": "", "max_error_rate": "", "min_rps": ""}, ("rps",), True,
     "A bounded load test with thresholds; a gate."),
    ("backup.create", _op_backup_create, ("ragops.db.backup:create_backup",), {"label": ""}, (), False,
     "Take a backup of the primary."),
    ("backup.verify", _op_backup_verify, ("ragops.db.backup:verify_backup",), {"backup_id": "", "restore": ""}, (),
     True, "Verify a backup (checksums; with restore: a test restore)."),
    ("backup.restore", _op_backup_restore, ("ragops.db.backup:restore_backup",),
     {"backup_id": "", "target_dsn": "", "target_db": "restore into this database on the primary instead",
      "node": "", "clean": "", "create": ""}, (), False, "Restore a backup."),
    ("backup.show", _op_backup_show, ("ragops.db.backup:show_backup",), {"backup_id": ""}, (), False,
     "A backup's manifest (row counts per table, finish time) and verification record."),
    ("backup.check", _op_backup_check, ("ragops.db.backup:check_backups",), {"max_age": "", "metrics_file": ""}, (),
     True, "Check the latest backup is fresh and good; a gate."),
    ("db.promote", _op_db_promote, ("ragops.db.replication:promote",),
     {"node": "", "max_lag": "", "force": "", "confirm_down": ""}, ("node",), False, "Promote a replica."),
    ("db.migrate", _op_db_migrate, ("ragops.db.migrate:apply_migrations",),
     {"dsn": "", "node": "", "dbname": "", "migrations_dir": "default: <service.path>/migrations", "app_user": ""},
     (), False, "Apply the service's migrations."),
    ("dns.failover", _op_dns_failover, ("ragops.dns.route53:failover",), {"to": "primary or secondary"}, (), False,
     "Point the DNS record at the other region."),
    ("region.failover", _op_region_failover, ("ragops.failover:region_failover",),
     {"to": "region name", "failure_time": "when the failure began (RTO origin)", "confirm_down": "",
      "skip_service": ""}, (), False,
     "Fail over to another region: fence, promote the replica, DNS, start the standby service, smoke test."),
    ("db.topology", _op_db_topology, ("ragops.db.replication:topology",), {}, (), False,
     "Every database node: role, reachability, replication lag."),
    ("service.stop", _op_service_stop, ("ragops.platforms:get_platform",), {"drain_timeout": ""}, (), False,
     "Stop the running colors gracefully; outputs what was stopped for service.start."),
    ("service.start", _op_service_start, ("ragops.platforms:get_platform", "ragops.readiness:wait_ready"),
     {"colors": "the `stopped` output of a service.stop step"}, ("colors",), False,
     "Start colors again (same version, deploy id and settings) and wait until they are ready."),
    ("maintenance", _op_maintenance, ("ragops.platforms:get_platform",),
     {"enabled": "true (default) or false; not `on`, which YAML reads as a boolean key"}, (), False,
     "Maintenance mode on or off (the router answers 503)."),
    ("service.status", _op_service_status, ("ragops.platforms:get_platform",), {}, (), False,
     "The colors as the platform sees them."),
    ("service.restart", _op_service_restart, ("ragops.platforms:get_platform",), {"all": "also idle colors"}, (),
     False, "Restart the live colors in place and wait until they are ready."),
]:
    ACTIONS[_name] = Action(name=_name, summary=_summary, run=_fn, params=_params, required=_required, needs=_needs,
                            gate=_gate, mutating=_name not in ("smoke", "loadtest", "backup.check", "service.status",
                                                               "backup.verify", "backup.show", "db.topology"))


# ---- validation --------------------------------------------------------------------------

def check_runbook(runbook, *, check_operations: bool = True, dirs: list[Path] | None = None) -> list:
    """Action-level checks: known action, required/unknown parameters, operations that exist,
    nested runbooks that exist."""
    from ragops.runbook.schema import Issue, find_runbook

    issues = []
    label = str(runbook.path)
    for index, step in enumerate(runbook.steps):
        line = runbook.line("steps", index, "action")
        spec = ACTIONS.get(step.action)
        if spec is None:
            if step.action:
                issues.append(Issue(label, line, f"step {step.id!r}: unknown action {step.action!r} "
                                    f"(known: {', '.join(sorted(ACTIONS))})"))
            continue
        for key in step.params:
            if key not in spec.params and not spec.any_params:
                issues.append(Issue(label, runbook.line("steps", index, "with", key),
                                    f"step {step.id!r}: action {step.action!r} has no parameter {key!r} "
                                    f"(parameters: {', '.join(spec.params) or 'none'})"))
        for key in spec.required:
            if key not in step.params:
                issues.append(Issue(label, runbook.line("steps", index, "with") or line,
                                    f"step {step.id!r}: action {step.action!r} needs with.{key}"))
        for key in spec.raw:
            values = step.params.get(key)
            for text in (values if isinstance(values, list) else [values] if values is not None else []):
                try:
                    expr.parse(str(text).strip().removeprefix("{{").removesuffix("}}").strip())
                except expr.ExpressionError as exc:
                    issues.append(Issue(label, runbook.line("steps", index, "with", key), f"step {step.id!r}: {exc.message}"))
        if check_operations:
            for need in spec.needs:
                missing = missing_operation(need)
                if missing:
                    issues.append(Issue(label, line, f"step {step.id!r}: action {step.action!r} needs {missing}, "
                                        f"which this installation does not have"))
        if step.action == "runbook" and isinstance(step.params.get("name"), str) and "{{" not in step.params["name"]:
            try:
                find_runbook(step.params["name"], dirs or [runbook.path.parent])
            except ConfigError:
                issues.append(Issue(label, runbook.line("steps", index, "with", "name"),
                                    f"step {step.id!r}: no runbook named {step.params['name']!r}"))
            if step.params["name"] == runbook.name:
                issues.append(Issue(label, runbook.line("steps", index, "with", "name"),
                                    f"step {step.id!r}: a runbook cannot run itself"))
    return issues


def describe(action_name: str, params: dict) -> str:
    """One line for --dry-run: what the step would do."""
    spec = ACTIONS.get(action_name)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    target = ""
    if spec and spec.needs and not action_name.startswith(("maintenance", "service.")):
        target = " via " + ", ".join(n.replace(":", ".") for n in spec.needs[:1])
    verb = "would ask" if spec and spec.interactive else "would run"
    return f"{verb} {action_name}{target}" + (f" ({shown})" if shown else "")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
