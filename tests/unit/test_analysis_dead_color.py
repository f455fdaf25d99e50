"""Issue 24: `down` during a deploy left the analysis reading "blue: 49 req" five times from a color
that no longer ran, and it passed. A color that stops answering, or whose request counter stops
moving while it is probed, gets no verdict (inconclusive), never a pass."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.unit.test_cli_and_engines import METRICS


class _Color:
    """A real HTTP server counting the probes it answers, like the service's /metrics does;
    `freeze()` stops counting (a process that accepts but no longer serves), `stop()` closes it."""

    def __init__(self) -> None:
        self.served = 100.0
        self.frozen = False
        color = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    n = color.served
                    body = (METRICS % dict(ok=n, err=0, b1=n, b2=n, b3=n)).encode()
                else:
                    if not color.frozen:
                        color.served += 1
                    body = b'{"version": "v2"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def freeze(self) -> None:
        self.frozen = True

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _analyze(url: str, window: float = 3.5):
    from ragops.deploy.analysis import analyze

    return analyze("blue", url, window=window, max_error_rate=0.05, max_p95_ms=2000, min_requests=5,
                   no_data_retries=0, probe_rps=10, interval=0.5)


@pytest.mark.parametrize("fault, after", [("stop", 2.0), ("freeze", 1.0)])
def test_a_color_that_goes_away_mid_window_is_inconclusive_not_a_pass(fault, after):
    color = _Color()
    threading.Timer(after, getattr(color, fault)).start()   # after the first samples counted requests
    try:
        result = _analyze(color.url)
    finally:
        if fault == "freeze":
            color.stop()
    assert result.requests > 0, "the samples before the fault had data"
    assert result.inconclusive and not result.passed, result.breaches
    expected = "stopped answering" if fault == "stop" else "counted no request"
    assert expected in result.breaches[0] and "inconclusive is not a pass" in result.breaches[0]


def test_a_color_that_keeps_serving_passes():
    color = _Color()
    try:
        started = time.monotonic()
        result = _analyze(color.url, window=2.0)
    finally:
        color.stop()
    assert result.passed and not result.inconclusive and time.monotonic() - started < 4
