"""CLI plumbing and the pure parts of the deploy engine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ragops.cli.main import hoist_global_options, main
from ragops.deploy.analysis import p95_from_buckets, parse_metrics
from ragops.deploy.lock import DeployLock, owner_alive
from ragops.durations import parse_duration
from ragops.errors import ExitCode, LockHeld
from ragops.platforms.local import FileLock
from ragops.secrets import redact, register_secret

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_exit_codes_are_the_documented_ones():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 130]


@pytest.mark.parametrize("argv,expected", [
    (["status", "-e", "prod"], ["-e", "prod", "status"]),
    (["-e", "prod", "status"], ["-e", "prod", "status"]),
    (["deploy", "--version", "v2", "--yes", "--output=json"], ["--yes", "--output=json", "deploy", "--version", "v2"]),
    (["lock", "break", "-y", "-v"], ["-y", "-v", "lock", "break"]),
    (["runbook", "run", "x", "--", "-e", "y"], ["runbook", "run", "x", "--", "-e", "y"]),
])
def test_global_options_before_and_after_the_subcommand(argv, expected):
    assert hoist_global_options(argv) == expected


def test_global_option_after_subcommand_really_applies(capsys):
    code = main(["version", "--output", "json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ragops"]


def test_help_does_not_import_heavy_sdks():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ragops.cli.main", "--help"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("boto3", "kubernetes", "docker", "paramiko", "botocore", "psycopg", "pydantic"):
        assert heavy not in imported, f"`ragops --help` imports {heavy}"


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-verb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no such command 'no-such-verb'", "hint: ragops --help"]


@pytest.mark.parametrize("argv,first_line,hint", [
    (["--output", "yaml", "status"], "error: invalid value for --output: expected text or json, got 'yaml'",
     "hint: ragops --help"),
    (["deploy", "--no-such-flag"], "error: no such option: --no-such-flag", "hint: ragops deploy --help"),
])
def test_usage_errors_are_one_error_line_and_a_hint(capsys, argv, first_line, hint):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [first_line, hint]
    assert "Usage:" not in "\n".join(err)


def test_ctrl_c_exits_130_and_says_what_to_run(capsys, monkeypatch):
    """Typer turns KeyboardInterrupt into a returned 130 with standalone_mode=False; it must not become 0."""
    import ragops.config

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ragops.config, "load_config", interrupted)
    assert main(["config", "validate"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted:") and "ragops status" in err


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5),
                                          ("26h", 93600), (45, 45), ("10", 10)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten", "5x", "", "1h 30m", -3])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_redaction_of_registered_secrets_and_dsns():
    register_secret("p4ssw0rd-xyz")
    assert redact("connect failed: password=p4ssw0rd-xyz host=x") == "connect failed: password=*** host=x"
    assert redact("postgresql://rag:whatever@db/rag") == "postgresql://rag:***@db/rag"
    assert "p4ssw0rd-xyz" not in redact("key p4ssw0rd-xyz leaked")


METRICS = """
# TYPE rag_http_requests_total counter
rag_http_requests_total{method="GET",route="/version",status="200"} %(ok)s
rag_http_requests_total{method="GET",route="/version",status="500"} %(err)s
rag_http_requests_total{method="GET",route="/metrics",status="200"} 999
# TYPE rag_http_request_duration_seconds histogram
rag_http_request_duration_seconds_bucket{route="/version",le="0.1"} %(b1)s
rag_http_request_duration_seconds_bucket{route="/version",le="1.0"} %(b2)s
rag_http_request_duration_seconds_bucket{route="/version",le="+Inf"} %(b3)s
rag_http_request_duration_seconds_count{route="/version"} %(b3)s
rag_http_request_duration_seconds_sum{route="/version"} 1
# TYPE rag_http_requests_in_flight gauge
rag_http_requests_in_flight 3
"""


def test_metrics_parsing_ignores_probes_and_counts_errors():
    snap = parse_metrics(METRICS % dict(ok=90, err=10, b1=50, b2=100, b3=100))
    assert snap.requests == 100 and snap.errors == 10 and snap.in_flight == 3
    assert snap.buckets[float("inf")] == 100


def test_p95_interpolates_inside_the_bucket():
    before = {0.1: 0, 1.0: 0, float("inf"): 0}
    after = {0.1: 50, 1.0: 100, float("inf"): 100}
    # 95 % of 100 = 95th observation, in (0.1, 1.0]: 0.1 + 0.9 * (45/50)
    assert p95_from_buckets(before, after) == pytest.approx(910.0)
    assert p95_from_buckets(after, after) is None   # no new observations: no data, not zero


def test_lock_is_exclusive_and_names_the_owner(tmp_path):
    backend = FileLock(tmp_path / "lock.json")
    first = DeployLock(backend, ttl=30, command="ragops deploy --version v2", deploy_id="d-1").acquire()
    with pytest.raises(LockHeld) as exc:
        DeployLock(backend, ttl=30, command="ragops deploy --version v3").acquire()
    assert "ragops deploy --version v2" in exc.value.message and str(os.getpid()) in exc.value.message
    first.release()
    assert backend.read() is None


def test_expired_lease_without_a_deploy_is_taken_over(tmp_path):
    backend = FileLock(tmp_path / "lock.json")
    backend.create({"token": "old", "owner": "x@y", "host": "elsewhere", "pid": 1, "expires_at": time.time() - 1})
    assert not owner_alive(backend.read())
    lock = DeployLock(backend, ttl=30, command="ragops deploy").acquire()
    assert backend.read()["token"] == lock.token
    lock.release()


def test_heartbeat_renews_the_lease(tmp_path):
    backend = FileLock(tmp_path / "lock.json")
    lock = DeployLock(backend, ttl=3, command="ragops deploy").acquire()
    first = backend.read()["expires_at"]
    time.sleep(1.3)
    assert backend.read()["expires_at"] > first
    lock.release()


class _MetricsServer:
    """A real HTTP server whose /metrics counters grow over time: healthy, then failing."""

    def __init__(self, fail_after: float):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        started = time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                elapsed = time.monotonic() - started
                ok = 100 * elapsed
                err = max(0.0, elapsed - fail_after) * 100   # 50 % errors once failing
                body = (METRICS % dict(ok=ok, err=err, b1=ok + err, b2=ok + err, b3=ok + err)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_analysis_catches_a_version_that_fails_late_in_the_window():
    from ragops.deploy.analysis import analyze

    server = _MetricsServer(fail_after=2.0)
    try:
        result = analyze("green", server.url, window=3.0, max_error_rate=0.35, max_p95_ms=2000, min_requests=5,
                         no_data_retries=0, probe_rps=0, interval=0.5)
    finally:
        server.close()
    # over the whole window (even if scrapes run late, up to 4 s) the error share stays under 35 %;
    # any interval after the failure began is at 50 %
    assert not result.passed
    assert any("in the last" in b and "error_rate" in b for b in result.breaches)


def test_analysis_without_traffic_is_inconclusive_not_a_pass():
    from ragops.deploy.analysis import analyze

    result = analyze("green", "http://127.0.0.1:9", window=0.5, max_error_rate=0.05, max_p95_ms=2000,
                     min_requests=5, no_data_retries=1, probe_rps=0, interval=0.25)
    assert not result.passed and result.inconclusive and result.attempts == 2
    assert "inconclusive is not a pass" in result.breaches[0]


@pytest.mark.parametrize("bad", [" ", "../../etc", "-rf", ".hidden", "v1 v2", "x" * 129, "v1/evil"])
def test_deploy_version_must_be_a_label(capsys, bad):
    """A version ends up in container tags, file names and router config: validate it like a tag."""
    assert main(["deploy", "--version", bad, "--plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --version:") and "not a version label" in err


@pytest.mark.parametrize("good", ["v1", "1.2.3", "v2-rc.1", "sha_0123abc"])
def test_version_labels_accepted(good):
    from ragops.settings.labels import is_version_label

    assert is_version_label(good)


def test_rollback_target_must_have_run_here():
    from ragops.deploy.engine import _check_rollback_target
    from ragops.errors import UsageError
    from ragops.platforms.base import ColorState

    records = [{"result": "succeeded", "version": "v2", "from_version": "v1"},
               {"result": "failed", "version": "v7", "from_version": "v2"},
               {"result": "succeeded", "strategy": "shadow", "version": "v8", "from_version": "v2",
                "shadow": {"then": None}},             # mirrored copies only: never served a user
               {"result": "succeeded", "strategy": "shadow", "version": "v9", "from_version": "v2",
                "shadow": {"then": "blue-green"}}]     # went on to serve
    warm = ColorState(color="green", running=True, version="v3")
    for ok in ("v1", "v2", "v3", "v9"):
        _check_rollback_target(ok, records, warm)
    for never in ("v99", "v7", "v8"):
        with pytest.raises(UsageError, match=f"--to {never}: that version never ran"):
            _check_rollback_target(never, records, warm)


def _dead_owner_lock(path, deploy_id):
    """A lock file as a ragops killed right after taking it leaves behind (its pid no longer exists)."""
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"token": "old", "owner": "someone@here", "host": socket.gethostname(), "pid": dead.pid,
              "command": "ragops deploy", "deploy_id": deploy_id, "created": "2026-01-01T00:00:00+00:00",
              "expires_at": time.time() + 3600, "ttl": 3600, "paused": False}
    path.write_text(json.dumps(record))
    return record


def test_stale_lock_without_a_journal_is_taken_over(tmp_path):
    """Killed between taking the lock and writing the journal: nothing to resume, so the lock is taken over."""
    backend = FileLock(tmp_path / "deploy.lock")
    _dead_owner_lock(backend.path, "d-orphan")
    lock = DeployLock(backend, ttl=30, command="ragops deploy", deploy_id="d-new").acquire(journaled=None)
    try:
        assert lock.taken_over["deploy_id"] == "d-orphan"
        assert backend.read()["deploy_id"] == "d-new"
    finally:
        lock.release()


def test_stale_lock_of_a_journaled_deploy_waits_for_resume_or_abort(tmp_path):
    backend = FileLock(tmp_path / "deploy.lock")
    _dead_owner_lock(backend.path, "d-interrupted")
    with pytest.raises(LockHeld, match="interrupted deploy d-interrupted"):
        DeployLock(backend, ttl=30, command="ragops deploy", deploy_id="d-new").acquire(journaled="d-interrupted")
    assert backend.read()["deploy_id"] == "d-interrupted"


@pytest.mark.parametrize("argv,message", [
    (["db", "promote", "nosuchnode", "--dry-run"], "error: unknown database node 'nosuchnode' (nodes: primary, replica1)"),
    (["db", "promote", "replica1", "--max-lag", "-1", "--dry-run"],
     "error: --max-lag: expected a number of bytes (0 or more), got -1"),
])
def test_promote_dry_run_validates_like_the_real_run(capsys, argv, message):
    """A dry run that plans what the real run would refuse is a lie: both exit 2 with the same line."""
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[0] == message
    assert main([a for a in argv if a != "--dry-run"] + ["--yes"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == message
