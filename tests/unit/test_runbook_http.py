"""http, notify and tls actions against real local servers (no mocks of httpx), and the CLI's
`runbook run` end to end in-process."""
from __future__ import annotations

import json
import ssl
import threading
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ragops.runbook.engine import Engine


class Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/healthz":
            self._send(200, b'{"status": "ok", "version": "v7"}', "application/json")
        elif self.path == "/broken":
            self._send(503, b"down for maintenance", "text/plain")
        else:
            self._send(404, b"nope", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Recorder.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self._send(500 if self.path == "/hook-broken" else 200, b"ok", "text/plain")

    def _send(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    Recorder.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run_book(tmp_path, body: str, config=None, **kw):
    folder = tmp_path / "runbooks"
    folder.mkdir(exist_ok=True)
    (folder / "t.yaml").write_text(body)
    engine = Engine(config, runs_dir=tmp_path / "runs", dirs=[folder], **kw)
    return engine.run(engine.load("t"), {})


def test_http_expected_status_body_and_json(tmp_path, server):
    result = run_book(tmp_path, f"""
name: t
description: d
steps:
  - id: health
    name: health
    action: http
    with: {{url: "{server}/healthz", expect_status: 200, expect_body: ok, expect_json: {{version: v7}}}}
  - id: use
    name: use
    action: assert
    with: {{that: "steps.health.outputs.json.version == 'v7' and steps.health.outputs.status == 200"}}
""")
    assert result.exit_code == 0, result.error


@pytest.mark.parametrize("params, message", [
    ('url: "{s}/broken"', "status 503, expected 2xx"),
    ('url: "{s}/healthz", expect_body: nothing-like-this', "body does not contain"),
    ('url: "{s}/healthz", expect_json: {{version: v8}}', "$.version: expected 'v8', got 'v7'"),
    ('url: "{s}/broken", expect_status: [200, 204]', "expected 200 or 204"),
])
def test_http_mismatch_is_a_gate_failure(tmp_path, server, params, message):
    result = run_book(tmp_path, f"""
name: t
description: d
steps:
  - id: check
    name: check
    action: http
    with: {{{params.format(s=server)}}}
""")
    assert result.exit_code == 3 and message in result.error


def test_http_connection_refused_fails_clearly(tmp_path):
    from ragops.netutil import free_port

    result = run_book(tmp_path, f"""
name: t
description: d
steps:
  - id: check
    name: check
    action: http
    with: {{url: "http://127.0.0.1:{free_port()}/x", timeout: 2s}}
""")
    assert result.exit_code == 3 and "ConnectError" in result.error


def test_notify_posts_a_slack_compatible_body(tmp_path, server):
    result = run_book(tmp_path, f"""
name: t
description: d
steps:
  - id: tell
    name: tell
    action: notify
    with:
      url: "{server}/hook"
      title: Service restored
      message: "restored from {{{{ run.runbook }}}}"
      severity: warning
      fields: {{environment: test}}
""")
    assert result.exit_code == 0, result.error
    (call,) = Recorder.received
    body = call["body"]
    assert call["path"] == "/hook" and call["headers"]["Content-Type"] == "application/json"
    assert "restored from t" in body["text"]
    attachment = body["attachments"][0]
    assert attachment["title"] == "Service restored" and attachment["color"].startswith("#")
    assert attachment["fields"] == [{"title": "environment", "value": "test", "short": True}]


def test_notify_failure_and_missing_webhook(tmp_path, server):
    result = run_book(tmp_path, f"""
name: t
description: d
steps:
  - id: tell
    name: tell
    action: notify
    with: {{url: "{server}/hook-broken", message: hi}}
""")
    assert result.exit_code == 1 and "webhook answered 500" in result.error
    result = run_book(tmp_path, """
name: t
description: d
steps:
  - id: tell
    name: tell
    action: notify
    with: {message: hi}
""")
    assert result.exit_code == 1 and "no webhook configured" in result.error


def _config(tmp_path, extra: str = ""):
    from ragops.config import load_config

    path = tmp_path / "ragops.yaml"
    path.write_text(f"""
project: rbtest
default_env: test
environments:
  test:
    state_dir: {tmp_path / 'state'}
{extra}
""")
    return load_config(path)


def test_notify_uses_the_configured_webhook_secret(tmp_path, server, monkeypatch):
    monkeypatch.setenv("RBTEST_WEBHOOK", f"{server}/configured-hook-with-token")
    config = _config(tmp_path, "    runbooks: {notify_webhook: '${env:RBTEST_WEBHOOK}'}")
    result = run_book(tmp_path, """
name: t
description: d
steps:
  - id: tell
    name: tell
    action: notify
    with: {message: hello}
""", config=config)
    assert result.exit_code == 0, result.error
    assert Recorder.received[0]["path"] == "/configured-hook-with-token"
    assert "rbtest/test" in Recorder.received[0]["body"]["attachments"][0]["footer"]


def test_security_scan_not_configured_fails_in_strict_mode(tmp_path):
    body = "name: t\ndescription: d\nsteps:\n  - {id: scan, name: scan, action: security.scan}\n"
    result = run_book(tmp_path, body, config=_config(tmp_path))
    assert result.exit_code == 3 and "not configured" in result.error
    lenient = run_book(tmp_path, body, config=_config(tmp_path, "    runbooks: {strict: false}"))
    assert lenient.exit_code == 0 and lenient.steps[0]["outputs"]["configured"] is False
    failing = run_book(tmp_path, body, config=_config(tmp_path, "    runbooks: {security_scan: 'echo HIGH: CVE-1 >&2; exit 1'}"))
    assert failing.exit_code == 3 and "CVE-1" in failing.error


def _self_signed(tmp_path: Path, days: int) -> tuple[Path, Path]:
    from datetime import datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"cert{days}.pem", tmp_path / f"key{days}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("days, code", [(30, 0), (3, 3)])
def test_tls_days_until_expiry(tmp_path, days, code):
    cert, key = _self_signed(tmp_path, days)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_book(tmp_path, f"""
name: t
description: d
steps:
  - id: cert
    name: cert
    action: tls
    with: {{host: 127.0.0.1, port: {httpd.server_address[1]}, min_days: 7}}
""")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.exit_code == code, result.error
    assert days - 1 <= result.steps[0]["outputs"]["days_left"] <= days
    if code:
        assert "expires in" in result.error


def test_cli_run_exit_codes_json_and_runs_listing(tmp_path, server, capsys, monkeypatch):
    from ragops.cli.main import main

    _config(tmp_path, f"    runbooks: {{dir: {tmp_path / 'books'}}}")
    books = tmp_path / "books"
    books.mkdir()
    (books / "cli.yaml").write_text(f"""
name: cli
description: d
inputs:
  want: {{type: integer, default: 200}}
steps:
  - id: health
    name: health
    action: http
    with: {{url: "{server}/healthz", expect_status: "{{{{ inputs.want }}}}"}}
  - id: go
    name: go
    action: approval
""")
    monkeypatch.setenv("CI", "1")
    cfg = str(tmp_path / "ragops.yaml")
    assert main(["-c", cfg, "runbook", "run", "cli"]) == 5
    err = capsys.readouterr().err
    assert "--approve go" in err and "nothing was run" in err      # refused before the http step ran
    assert main(["-c", cfg, "runbook", "run", "cli", "--approve", ""]) == 5   # "$UNSET_CI_VARIABLE"
    assert "--approve: an empty value grants no step" in capsys.readouterr().err
    assert main(["-c", cfg, "-o", "json", "runbook", "run", "cli", "--approve", "go"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "succeeded" and [s["status"] for s in data["steps"]] == ["ok", "ok"]
    assert main(["-c", cfg, "runbook", "run", "cli", "--input", "want=204", "--approve", "go"]) == 3
    capsys.readouterr()
    assert main(["-c", cfg, "runbook", "run", "cli", "--input", "nope=1"]) == 2
    capsys.readouterr()
    assert main(["-c", cfg, "-o", "json", "runbook", "run", "cli", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] is True and plan["steps"][0]["params"]["expect_status"] == 200
    assert main(["-c", cfg, "-o", "json", "runbook", "runs"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in runs] == ["gate_failed", "succeeded"]   # the refused runs never started
