"""The rollback path asks only what it needs: the colors' records and the router's weights, then
the color it switches to; the old color stays warm without being asked anything (no drain scrape)."""
from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from ragops.platforms.base import ColorState
from ragops.settings.notify import NotifySettings


def color_server(version: str, hits: Counter):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] += 1
            body = f'{{"version": "{version}"}}'.encode() if self.path == "/version" else b"ok"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class FakePlatform:
    """Two running colors (blue v2 live, green v1 warm) each behind a real HTTP server."""

    def __init__(self, tmp_path, urls):
        from ragops.platforms.local import FileLock

        self.dir, self.urls = tmp_path, urls
        self.lock = FileLock(tmp_path / "lock.json")
        self.weights = {"blue": 100}
        self.probed: list[str] = []

    def journal_dir(self):
        return self.dir / "deploys"

    def lock_backend(self):
        return self.lock

    def router_running(self):
        return True

    def router_weights(self):
        return dict(self.weights)

    def color_state(self, color, probe=True):
        if probe:
            self.probed.append(color)
        return ColorState(color=color, running=True, version={"blue": "v2", "green": "v1"}[color],
                          url=self.urls[color], ready=True if probe else None)

    def colors(self):   # as the real platforms do: every color, probed, with the router's weights
        from ragops.platforms.base import with_weights

        return with_weights([self.color_state(c) for c in ("blue", "green")], self.weights)

    def color_urls(self, color):
        return [(None, self.urls[color])]

    def set_weights(self, weights, *, confirm_timeout=10.0):
        self.weights = {c: w for c, w in weights.items() if w}
        return 0.01


@pytest.fixture
def two_colors(tmp_path):
    hits = {"blue": Counter(), "green": Counter()}
    servers = {"blue": color_server("v2", hits["blue"]), "green": color_server("v1", hits["green"])}
    urls = {c: f"http://127.0.0.1:{s.server_address[1]}" for c, s in servers.items()}
    yield FakePlatform(tmp_path, urls), hits
    for server in servers.values():
        server.shutdown()


def test_rollback_asks_only_the_warm_color_and_leaves_the_old_one_alone(two_colors, monkeypatch):
    from ragops.deploy import engine
    from ragops.deploy.history import Journal

    platform, hits = two_colors
    Journal(platform.journal_dir()).finish({"id": "d-1", "version": "v2", "from_version": "v1",
                                             "result": "succeeded", "steps": []}, limit=50)
    config = SimpleNamespace(
        resolve_references=lambda *sections: None,
        service=SimpleNamespace(readiness_path="/readyz", health_path="/healthz"),
        deploy=SimpleNamespace(lock_ttl=30, history_limit=50, keep_previous=1, drain_timeout=10),
        env=SimpleNamespace(notify=NotifySettings()))
    monkeypatch.setattr(engine, "get_platform", lambda cfg: platform)
    result = engine.rollback(config)   # type: ignore[arg-type]
    assert (result.result, result.version, result.from_version) == ("succeeded", "v1", "v2")
    assert platform.weights == {"green": 100}
    assert platform.probed == [], "no color is probed through the platform (each probe is HTTP calls)"
    assert hits["green"] == Counter({"/readyz": 1, "/version": 1}), "the warm color is asked, once"
    assert hits["blue"] == Counter(), "the old color stays warm: no probe, no drain scrape of /metrics"
    drain = [s for s in result.steps if s["name"] == "drain blue"]
    assert drain and drain[0]["detail"].startswith("kept warm for instant rollback")


def test_a_warm_color_answering_another_version_is_not_flipped_to(two_colors):
    from ragops.deploy.deployment import DeploymentBase, DeployOptions

    platform, hits = two_colors
    config = SimpleNamespace(service=SimpleNamespace(readiness_path="/readyz"),
                             deploy=SimpleNamespace(lock_ttl=30))
    d = DeploymentBase(config, DeployOptions(version="v1", strategy="rollback", steps=[100], step_pause=0),
                       platform=platform)   # type: ignore[arg-type]
    assert d.warm_check("green", "v1") is None
    platform.color_state = lambda color, probe=True: ColorState(color=color, running=True, version="v1",
                                                               url=platform.urls["blue"])
    platform.color_urls = lambda color: [(None, platform.urls["blue"])]     # its server says v2
    assert d.warm_check("green", "v1") == "answers version v2, not v1"
    platform.color_urls = lambda color: [("h2", "http://127.0.0.1:9")]      # nothing listens there
    assert d.warm_check("green", "v1").startswith("does not answer on host h2")
