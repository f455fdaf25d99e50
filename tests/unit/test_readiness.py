"""ragops.readiness.wait_ready: the one readiness poller (deploy, up, failover, runbooks)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from ragops.errors import OperationFailed
from ragops.platforms.base import ColorState
from ragops.readiness import wait_ready


class StubPlatform:
    """Only what wait_ready reads: a URL, the readiness path, the process state and its log."""

    def __init__(self, url: str, running: bool = True, log=None):
        self.config = SimpleNamespace(service=SimpleNamespace(readiness_path="/readyz"))
        self.url, self.running, self.log = url, running, log

    def color_url(self, color):
        return self.url

    def color_state(self, color, probe=True):
        return ColorState(color=color, running=self.running)

    def log_file(self, color):
        return self.log


@pytest.fixture
def server(request):
    answers = list(getattr(request, "param", [503, 503, 200]))   # the last answer repeats

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answers.pop(0) if len(answers) > 1 else answers[0])
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_polls_until_ready_with_the_given_sleep(server):
    naps, said = [], []
    seconds = wait_ready(StubPlatform(server), "blue", 5, said.append, interval=0.01, sleep=naps.append)
    assert naps == [0.01, 0.01] and seconds >= 0 and said == [f"blue is ready ({seconds:.1f}s)"]


def test_a_color_that_dies_reports_the_error_line_of_its_log(tmp_path):
    log = tmp_path / "blue.log"
    log.write_text("INFO starting\nERROR: could not bind port 8000\nINFO Finished server process\n")
    platform = StubPlatform("http://127.0.0.1:9", running=False, log=log)
    with pytest.raises(OperationFailed, match=r"blue exited before it was ready: ERROR: could not bind port 8000"):
        wait_ready(platform, "blue", 5)


@pytest.mark.parametrize("server", [[503]], indirect=True)
def test_not_ready_in_time_names_the_last_answer(server):
    with pytest.raises(OperationFailed, match=r"green on host h1 was not ready within 1s \(/readyz: 503"):
        wait_ready(StubPlatform("http://127.0.0.1:9"), "green", 0.6, url=server, where="h1", interval=0.1)
