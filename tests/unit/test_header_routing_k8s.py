"""Routing for people on Kubernetes: the canary header as routes of the public IngressRoute, written
by the CRD router with each weight change (in-memory objects, then through the fake API server)."""
from __future__ import annotations

from ragops.platforms import k8s_manifests as m
from ragops.routing import traefik_crd as crd
from ragops.routing.base import PeopleRouting, traefik_people_rule
from tests.unit.test_kubernetes_manifests import check_traefik_shapes, everything, production  # noqa: F401
from tests.unit.test_kubernetes_platform import NS, PROJECT, cluster  # noqa: F401 - the fake cluster fixture

PUBLIC = {"apiVersion": crd.API_VERSION, "kind": "IngressRoute", "metadata": {"name": "rag"},
          "spec": {"entryPoints": ["websecure"], "tls": {"secretName": "t"},
                   "routes": [{"match": "Host(`api.example.com`)", "kind": "Rule",
                               "middlewares": [{"name": "rag-retry"}],
                               "services": [{"name": "rag", "kind": "TraefikService"}]}]}}


def router(objects: dict, header: str = "X-Canary") -> crd.TraefikCrdRouter:
    return crd.TraefikCrdRouter(metadata={"name": "rag"}, services={"blue": "rag-blue", "green": "rag-green"},
                                port=80, apply_object=lambda o: objects.__setitem__((o["kind"], o["metadata"]["name"]), o),
                                read_object=lambda kind, name: objects.get((kind, name)),
                                people=PeopleRouting(header=header))


def test_header_routes_follow_the_canary_and_go_away_after_it():
    objects = {("IngressRoute", "rag"): PUBLIC}
    r = router(objects, header="X-Tester")
    r.apply({}, {"blue": 80, "green": 20}, False)
    routes = objects[("IngressRoute", "rag")]["spec"]["routes"]
    assert [(x["match"], x["services"]) for x in routes[:2]] == [
        (f"Host(`api.example.com`) && {traefik_people_rule('X-Tester', 'always')}", [{"name": "rag-green", "port": 80}]),
        (f"Host(`api.example.com`) && {traefik_people_rule('X-Tester', 'never')}", [{"name": "rag-blue", "port": 80}])]
    assert all(x["priority"] > len(routes[2]["match"]) and x["middlewares"] == [{"name": "rag-retry"}]
               for x in routes[:2])
    assert routes[2] == PUBLIC["spec"]["routes"][0]                          # the public route unchanged, last
    assert objects[("IngressRoute", "rag")]["spec"]["tls"] == {"secretName": "t"}
    r.apply({}, {"blue": 30, "green": 70}, False)                            # green is now the stable side
    routes = objects[("IngressRoute", "rag")]["spec"]["routes"]
    assert [x["services"][0]["name"] for x in routes[:2]] == ["rag-blue", "rag-green"] and len(routes) == 3
    r.apply({}, {"green": 100, "blue": 0}, False)                            # promoted: no header routes
    assert objects[("IngressRoute", "rag")]["spec"]["routes"] == PUBLIC["spec"]["routes"]


def test_no_public_route_yet_nothing_is_written():
    objects: dict = {}
    router(objects).apply({}, {"blue": 50, "green": 50}, False)
    assert ("IngressRoute", "rag") not in objects and ("TraefikService", "rag") in objects


def test_set_weights_on_the_platform_writes_the_header_routes_to_the_api_server(cluster):  # noqa: F811
    p = cluster.platform
    p._apply(m.public_route(cluster.config))
    p.set_weights({"blue": 90, "green": 10})
    stored = cluster.fake.get(crd.API_VERSION, NS, "ingressroutes", PROJECT)
    assert [r["services"][0]["name"] for r in stored["spec"]["routes"]] == [f"{PROJECT}-green", f"{PROJECT}-blue",
                                                                           PROJECT]
    assert traefik_people_rule("X-Canary", "always") in stored["spec"]["routes"][0]["match"]
    p.set_weights({"blue": 0, "green": 100})
    stored = cluster.fake.get(crd.API_VERSION, NS, "ingressroutes", PROJECT)
    assert stored["spec"]["routes"] == m.public_route(cluster.config)["spec"]["routes"]


def test_the_header_routes_have_the_shape_traefik_expects(production):  # noqa: F811
    """The public route with header routes passes the same checks as every rendered CRD (references
    resolve to rendered Services and Middlewares, matches and fields as Traefik's CRD takes them)."""
    objects = everything(production)
    store = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    r = crd.TraefikCrdRouter(metadata=m.meta(production, m.router_name(production)),
                             services={c: m.color_name(production, c) for c in ("blue", "green")},
                             port=m.SERVICE_PORT, apply_object=lambda o: store.__setitem__((o["kind"], o["metadata"]["name"]), o),
                             read_object=lambda kind, name: store.get((kind, name)))
    r.apply({}, {"blue": 50, "green": 50}, False)
    public = store[("IngressRoute", m.router_name(production))]
    assert len(public["spec"]["routes"]) == 3
    check_traefik_shapes(list(store.values()))
