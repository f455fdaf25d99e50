"""Shadow traffic in the router layer: Traefik's mirror file, and routers that cannot mirror refusing."""
from __future__ import annotations

import pytest
import yaml

from ragops.errors import UsageError
from ragops.routing import FileStore, get_router
from ragops.routing.base import Mirror
from ragops.routing.traefik_file import (
    DYNAMIC_FILE,
    MIRROR_FILE,
    MIRROR_ROUTER,
    MIRROR_SERVICE,
    SERVICE,
    dynamic_config,
    mirror_config,
    parse_dynamic,
    parse_mirror,
)


def router(kind: str, tmp_path):
    return get_router(kind, listen="127.0.0.1:9601", api="127.0.0.1:9602", store=FileStore(tmp_path),
                      colors={"blue": "http://127.0.0.1:9611", "green": "http://127.0.0.1:9612"})


def test_reads_only_mirror_matches_get_and_head_and_mirrors_the_weighted_service():
    data = mirror_config(Mirror("green", 20))
    route = data["http"]["routers"][MIRROR_ROUTER]
    assert route["rule"] == "PathPrefix(`/`) && (Method(`GET`) || Method(`HEAD`))"
    assert route["service"] == MIRROR_SERVICE and route["priority"] > len("PathPrefix(`/`)")
    mirroring = data["http"]["services"][MIRROR_SERVICE]["mirroring"]
    # users get the answers of `rag` (the live weighted service), never the shadow's
    assert mirroring["service"] == SERVICE
    assert mirroring["mirrors"] == [{"name": "rag-green", "percent": 20}]
    assert mirroring["maxBodySize"] == 1 << 20       # bounded router memory: larger bodies are not mirrored


def test_mirror_writes_matches_every_method():
    route = mirror_config(Mirror("blue", 100, writes=True))["http"]["routers"][MIRROR_ROUTER]
    assert route["rule"] == "PathPrefix(`/`)"


def test_mirror_reads_back_from_its_file_and_no_mirror_is_an_empty_file():
    for mirror in (Mirror("green", 20), Mirror("blue", 100, writes=True)):
        assert parse_mirror(yaml.safe_load(yaml.safe_dump(mirror_config(mirror)))) == mirror
    assert mirror_config(None) == {}
    assert parse_mirror({}) is None


def test_mirror_is_a_file_of_its_own_so_weight_changes_keep_it(tmp_path):
    r = router("traefik", tmp_path)
    r.apply({"blue": "http://127.0.0.1:9611", "green": "http://127.0.0.1:9612"}, {"blue": 100}, False)
    r.set_mirror(Mirror("green", 30))
    r.apply({"blue": "http://127.0.0.1:9611", "green": "http://127.0.0.1:9612"}, {"blue": 100, "green": 0}, False)
    assert r.mirror() == Mirror("green", 30)
    assert parse_dynamic(yaml.safe_load((tmp_path / DYNAMIC_FILE).read_text()))[1] == {"blue": 100}
    r.set_mirror(None)
    assert r.mirror() is None and yaml.safe_load((tmp_path / MIRROR_FILE).read_text()) == {}
    # the main config never names the mirror
    assert MIRROR_SERVICE not in str(dynamic_config({"blue": "u"}, {"blue": 100}))


def test_maintenance_ends_a_mirror_whose_router_would_bypass_it(tmp_path):
    r = router("traefik", tmp_path)
    backends = {"blue": "http://127.0.0.1:9611", "green": "http://127.0.0.1:9612"}
    r.apply(backends, {"blue": 100}, False)
    r.set_mirror(Mirror("green", 30))
    r.apply(backends, {"blue": 100}, True)
    assert r.mirror() is None


def test_routers_that_cannot_mirror_refuse_with_one_line_naming_the_router(tmp_path):
    r = router("haproxy", tmp_path)
    assert not r.supports_mirroring
    with pytest.raises(UsageError, match=r"^router haproxy: cannot mirror traffic") as exc:
        r.set_mirror(Mirror("green", 10))
    assert "\n" not in exc.value.message
    router("traefik", tmp_path).check_mirroring()   # no error
