"""The canary header means the same on Traefik and HAProxy (routing/base.py PEOPLE_VALUES): values
compared without case and surrounding spaces, every header line and every comma-separated item
counted, `always` alone -> the other color, `never` alone -> the stable one, both -> the weights.
Raw HTTP/1.1 requests (repeated header lines as a client may send them) through the real routers."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragops.netutil import free_port
from ragops.routing import FileStore, get_router
from ragops.routing.base import PeopleRouting
from tests.conftest import need, server_tmpdir

pytestmark = pytest.mark.integration

# header lines sent -> the color that must answer while blue serves 100 % and green runs warm at 0 %
CASES = [
    ([], "blue"),
    (["always"], "green"),
    (["ALWAYS"], "green"),
    (["  Always  "], "green"),
    (["always, always"], "green"),
    (["always", "Always"], "green"),
    (["never"], "blue"),
    (["always,never"], "blue"),            # both: the weights decide
    (["always", "never"], "blue"),         # both, on two lines: the weights decide
    (["never, ALWAYS"], "blue"),
    (["sometimes"], "blue"),
]


def backend(color: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = color.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def raw_get(address: str, values: list[str]) -> str:
    """One request with `values` as separate X-Canary lines; the answering color (the body)."""
    host, port = address.rsplit(":", 1)
    lines = ["GET /version HTTP/1.1", f"Host: {address}", *[f"X-Canary: {v}" for v in values], "Connection: close"]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


@pytest.fixture(params=["traefik", "haproxy"])
def router(request):
    kind = request.param
    if kind == "haproxy":
        need(shutil.which("haproxy") is not None, "the haproxy binary (apt-get install haproxy)")
    servers = {"blue": backend("blue"), "green": backend("green")}
    backends = {c: f"http://127.0.0.1:{s.server_address[1]}" for c, s in servers.items()}
    root = server_tmpdir("xcanary")
    listen, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    r = get_router(kind, listen=listen, api=api, store=FileStore(Path(root)), colors=backends,
                   people=PeopleRouting("X-Canary"), health_path="/readyz")
    try:
        binary = r.binary()
    except Exception as exc:  # noqa: BLE001
        need(False, f"the {kind} binary ({exc})")
    r.prepare(str(root))
    weights = {"blue": 100, "green": 0}
    r.apply(backends, weights, False)
    proc = subprocess.Popen([binary, *r.start_args(str(root))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not r.ready() and time.monotonic() < deadline:
            time.sleep(0.2)
        r.apply(backends, weights, False)        # haproxy: through the runtime API, now that it runs
        r.confirm(weights, timeout=20)
        yield listen
    finally:
        proc.terminate()
        proc.wait(10)
        for s in servers.values():
            s.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def test_the_canary_header_means_the_same_on_every_router(router):
    # the routers' health checks may take a moment to mark both colors up
    deadline = time.monotonic() + 15
    while raw_get(router, ["always"]) != "green" and time.monotonic() < deadline:
        time.sleep(0.3)
    seen = {tuple(values): raw_get(router, values) for values, _ in CASES}
    assert seen == {tuple(values): color for values, color in CASES}
