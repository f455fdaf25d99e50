"""Notifications never delay a traffic change: a rollback flips first, the webhook is posted from a
background queue, and the command waits at most notify.timeout at its end, naming what was not delivered."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from ragops.settings.notify import NotifySettings
from tests.unit.test_rollback_path import FakePlatform, color_server


@pytest.fixture
def slow_webhook():
    """A webhook that answers after `delay` seconds; records when each body arrived."""
    arrived: list[tuple[float, dict]] = []
    state = {"delay": 3.0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            arrived.append((time.monotonic(), body))
            time.sleep(state["delay"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", arrived, state
    server.shutdown()


def wait_for(arrived: list, timeout: float = 10.0) -> list:
    """The sender is a daemon thread of this process: it goes on after the command returned."""
    deadline = time.monotonic() + timeout
    while not arrived and time.monotonic() < deadline:
        time.sleep(0.05)
    return arrived


def config_for(tmp_path, url: str, timeout: float):
    return SimpleNamespace(
        project="p", env_name="prod", state_dir=tmp_path, reveal=lambda ref, key: url,
        resolve_references=lambda *sections: None,
        service=SimpleNamespace(readiness_path="/readyz", health_path="/healthz"),
        deploy=SimpleNamespace(lock_ttl=30, history_limit=50, keep_previous=1, drain_timeout=10),
        env=SimpleNamespace(notify=NotifySettings(webhook="${env:HOOK}", timeout=timeout)))


def test_a_rollback_flips_before_a_slow_webhook_and_waits_at_most_notify_timeout(tmp_path, monkeypatch, slow_webhook):
    from ragops.deploy import engine
    from ragops.deploy.history import Journal

    url, arrived, _ = slow_webhook
    hits = {"blue": Counter(), "green": Counter()}
    servers = {"blue": color_server("v2", hits["blue"]), "green": color_server("v1", hits["green"])}
    platform = FakePlatform(tmp_path, {c: f"http://127.0.0.1:{s.server_address[1]}" for c, s in servers.items()})
    flipped: list[float] = []
    set_weights = platform.set_weights
    platform.set_weights = lambda weights, **kw: (flipped.append(time.monotonic()), set_weights(weights))[1]
    Journal(platform.journal_dir()).finish({"id": "d-1", "version": "v2", "from_version": "v1",
                                             "result": "succeeded", "steps": []}, limit=50)
    monkeypatch.setattr(engine, "get_platform", lambda cfg: platform)
    started = time.monotonic()
    result = engine.rollback(config_for(tmp_path, url, timeout=1.0))   # type: ignore[arg-type]
    took = time.monotonic() - started
    for server in servers.values():
        server.shutdown()
    assert platform.weights == {"green": 100}
    assert wait_for(arrived) and flipped and arrived[0][0] >= flipped[0], "the start notification went out before the flip"
    assert took < 1.0 + 1.5, f"the command waited {took:.1f}s for a webhook (notify.timeout is 1s)"
    assert [o["event"] for o in result.notifications] == ["rollback.start", "rollback.succeeded"]
    assert all(not o["delivered"] for o in result.notifications)
    assert "not delivered within notify.timeout" in result.notifications[-1]["error"]
    start = arrived[0][1]["ragops"]
    assert (start["event"], start["from_version"], start["version"]) == ("start", "v2", "v1")


def test_delivered_outcomes_and_a_full_queue(tmp_path, slow_webhook):
    from ragops.notify.outbox import QUEUE_SIZE, Outbox

    url, arrived, state = slow_webhook
    state["delay"] = 0.0
    outbox = Outbox(config_for(tmp_path, url, timeout=5.0))
    outbox.put("deploy", "succeeded", "ok")
    outbox.put("deploy", "aborted", "not in notify.on: not queued")
    assert outbox.finish(5.0) == [{"event": "deploy.succeeded", "delivered": True, "error": None}]
    held = Outbox(config_for(tmp_path, url, timeout=5.0), hold=True)
    for _ in range(QUEUE_SIZE + 1):
        held.put("deploy", "failed", "x")
    assert held.outcomes[-1] == {"event": "deploy.failed", "delivered": False,
                                 "error": "notification queue full: dropped"}


def test_notify_on_reads_as_written_in_the_readme(tmp_path):
    from ragops.config import load_config
    from tests.conftest import REPO

    text = (REPO / "ragops.yaml").read_text() + "\nnotify:\n  on: [rolled_back, failed]\n  timeout: 2\n"
    path = tmp_path / "ragops.yaml"
    path.write_text(text)
    config = load_config(path, "local")
    assert config.env.notify.on == ["rolled_back", "failed"]
    assert "failed" in NotifySettings().on and "aborted" not in NotifySettings().on


def test_a_failover_fences_before_a_slow_webhook_answers(tmp_path, monkeypatch, slow_webhook):
    from ragops import failover

    url, arrived, _ = slow_webhook
    fenced: list[float] = []

    class Run:   # the failover's phases, instant: what matters is when the notification goes out
        region, node = "secondary", "replica1"
        report = SimpleNamespace(notes=[], rto_seconds=1.0, rpo_seconds=0.0)

        def __init__(self, *args):
            pass

        def fence(self):
            fenced.append(time.monotonic())

        promote = dns = service = fence

        def finish(self):
            return self.report

    monkeypatch.setattr(failover, "_RegionFailover", Run)
    started = time.monotonic()
    failover.region_failover(config_for(tmp_path, url, timeout=1.0), "secondary")
    assert fenced and fenced[0] - started < 0.5, "the failover waited for the webhook"
    assert time.monotonic() - started < 1.0 + 1.5
    assert wait_for(arrived) and arrived[0][1]["ragops"]["event"] == "start"
