"""Routing for people on HAProxy: the canary header picks a color's own backend through people.map."""
from __future__ import annotations

import shutil
import subprocess

from ragops.routing import FileStore, get_router
from ragops.routing.base import PeopleRouting, RouterState, people_targets
from ragops.routing.haproxy import PEOPLE_MAP, people_map, recorded, render, render_people_map
from tests.conftest import need

BACKENDS = {"blue": "http://127.0.0.1:9001", "green": "http://127.0.0.1:9002"}


def test_people_targets_follow_the_weights():
    assert people_targets(BACKENDS, {"blue": 100, "green": 0}) == {"always": "green", "never": "blue"}
    assert people_targets(BACKENDS, {"blue": 30, "green": 70}) == {"always": "blue", "never": "green"}
    assert people_targets({"blue": BACKENDS["blue"]}, {"blue": 100}) == {}
    assert people_targets(BACKENDS, {}) == {}          # nothing serves: no canary


def test_people_map_names_the_colors_during_a_canary_else_none():
    canary = RouterState(dict(BACKENDS), {"blue": 80, "green": 20})
    assert people_map(canary) == {"always": "green", "never": "blue"}
    assert render_people_map(canary) == "always green\nnever blue\n"
    alone = RouterState({"blue": BACKENDS["blue"]}, {"blue": 100})
    assert people_map(alone) == {"always": "none", "never": "none"}
    assert people_map(RouterState(dict(BACKENDS), {"blue": 80, "green": 20}, maintenance=True))["always"] == "none"


def test_config_routes_the_configured_header_through_the_map_to_a_server(tmp_path):
    text = render(listen="127.0.0.1:1", api="127.0.0.1:2", root=str(tmp_path),
                  state=RouterState(dict(BACKENDS), {"blue": 100}), people=PeopleRouting(header="X-Tester"))
    rules = [x.split() for x in text.splitlines() if x.strip().startswith("use-server")]
    def mapped(color):
        return ["{", f"req.hdr(X-Tester),lower,map({tmp_path}/{PEOPLE_MAP})", "-m", "str", color, "}"]
    assert rules == [["use-server", color, "if", *mapped(color), "!{", "req.hdr(X-Tester)", "-i", "always", "}", "||",
                      *mapped(color), "!{", "req.hdr(X-Tester)", "-i", "never", "}"] for color in ("blue", "green")]


def test_haproxy_accepts_the_config_with_header_routing(tmp_path):
    haproxy = shutil.which("haproxy")
    need(haproxy is not None, "the haproxy binary (apt-get install haproxy)")
    router = get_router("haproxy", listen="127.0.0.1:18080", api="127.0.0.1:18081", store=FileStore(tmp_path),
                        colors=BACKENDS)
    router.apply(BACKENDS, {"blue": 50, "green": 50}, False)
    assert (tmp_path / PEOPLE_MAP).read_text() == "always green\nnever blue\n"
    check = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_sticky_inserts_a_cookie_naming_each_server_ignored_while_its_weight_is_zero(tmp_path):
    state = RouterState(dict(BACKENDS), {"blue": 50, "green": 50})
    text = render(listen="127.0.0.1:1", api="127.0.0.1:2", root=str(tmp_path), state=state,
                  people=PeopleRouting(sticky=True, cookie="my_color"))
    lines = [x.strip() for x in text.splitlines()]
    assert "cookie my_color insert indirect nocache httponly" in lines
    assert [x for x in lines if x.startswith("server ") and not x.endswith(" backup")] == [
        "server blue 127.0.0.1:9001 weight 50 check cookie blue", "server green 127.0.0.1:9002 weight 50 check cookie green"]
    assert [x for x in lines if x.startswith("ignore-persist")] == [
        f"ignore-persist if {{ req.cook(my_color) -m str {c} }} {{ srv_weight(rag/{c}) eq 0 }}" for c in ("blue", "green")]
    assert recorded(text)["cookie"] == "my_color"


def test_without_sticky_no_cookie_is_set():
    text = render(listen="127.0.0.1:1", api="127.0.0.1:2", root="/run/router",
                  state=RouterState(dict(BACKENDS), {"blue": 50, "green": 50}), people=PeopleRouting())
    assert "cookie" not in text and "ignore-persist" not in text and "cookie" not in recorded(text)


def test_haproxy_accepts_the_config_with_sticky_sessions(tmp_path):
    haproxy = shutil.which("haproxy")
    need(haproxy is not None, "the haproxy binary (apt-get install haproxy)")
    router = get_router("haproxy", listen="127.0.0.1:18080", api="127.0.0.1:18081", store=FileStore(tmp_path),
                        colors=BACKENDS, people=PeopleRouting(sticky=True))
    router.apply(BACKENDS, {"blue": 0, "green": 100}, False)
    assert "cookie ragops_color insert" in (tmp_path / "haproxy.cfg").read_text()
    check = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
