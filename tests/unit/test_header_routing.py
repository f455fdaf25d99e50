"""Routing for people on HAProxy: the canary header picks a color's own backend through people.map."""
from __future__ import annotations

import shutil
import subprocess

from ragops.routing import FileStore, get_router
from ragops.routing.base import PeopleRouting, RouterState, people_targets
from ragops.routing.haproxy import PEOPLE_MAP, people_map, render, render_people_map
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
    assert rules == [["use-server", color, "if", "{", f"req.hdr(X-Tester),map({tmp_path}/{PEOPLE_MAP})", "-m",
                      "str", color, "}"] for color in ("blue", "green")]


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
