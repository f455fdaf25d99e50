"""Router: Traefik's CRDs on Kubernetes (a weighted TraefikService, IngressRoutes, Middlewares).

Traefik is the router on the local and docker platforms too, so the weights mean the same thing
everywhere (weighted round robin over the colors), and the TraefikService is a single small object
ragops replaces and reads back to confirm a switch. A color at weight 0 is left out of the list
(as the file provider does): Traefik has had bugs where a weight-0 member still got requests.

The object builders take metadata and names, not the ragops config: ragops.platforms.k8s_manifests
fills them (names, labels, namespace) so this module never imports the platform.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from ragops.errors import OperationFailed
from ragops.routing.base import PeopleRouting, Router, RouterState, people_targets, traefik_people_rule

GROUP = "traefik.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {"TraefikService": "traefikservices", "IngressRoute": "ingressroutes", "Middleware": "middlewares"}
# the canary header routes rank above the public route (Traefik's default priority is the rule's length)
PEOPLE_PRIORITY = 10_000


def weighted_service(metadata: dict, members: list[tuple[str, int, int]], sticky_cookie: str | None = None) -> dict:
    """`members`: (Service name, port, weight); weight-0 members are left out. `sticky_cookie`: Traefik's
    sticky cookie on the weighted service (deploy.sticky), so a client keeps the color it first got."""
    services = [{"name": name, "port": port, "weight": int(weight)} for name, port, weight in members if int(weight) > 0]
    weighted: dict = {"services": services}
    if sticky_cookie:
        weighted["sticky"] = {"cookie": {"name": sticky_cookie, "httpOnly": True, "sameSite": "lax"}}
    return {"apiVersion": API_VERSION, "kind": "TraefikService", "metadata": metadata, "spec": {"weighted": weighted}}


def member_weights(traefik_service: dict | None) -> dict[str, int]:
    """Service name -> weight, read back from a TraefikService."""
    if not traefik_service:
        return {}
    entries = ((traefik_service.get("spec") or {}).get("weighted") or {}).get("services") or []
    return {e.get("name"): int(e.get("weight", 1)) for e in entries if e.get("name")}


def retry_middleware(metadata: dict, attempts: int = 3, initial_interval: str = "50ms") -> dict:
    return {"apiVersion": API_VERSION, "kind": "Middleware", "metadata": metadata,
            "spec": {"retry": {"attempts": attempts, "initialInterval": initial_interval}}}


def strip_prefix_middleware(metadata: dict, prefixes: list[str]) -> dict:
    return {"apiVersion": API_VERSION, "kind": "Middleware", "metadata": metadata,
            "spec": {"stripPrefix": {"prefixes": list(prefixes)}}}


def ingress_route(metadata: dict, *, entry_points: list[str], match: str, services: list[dict],
                  middlewares: Sequence[str] = (), tls_secret: str | None = None) -> dict:
    route: dict = {"match": match, "kind": "Rule"}
    if middlewares:
        route["middlewares"] = [{"name": name} for name in middlewares]
    route["services"] = services
    spec: dict = {"entryPoints": list(entry_points), "routes": [route]}
    if tls_secret:
        spec["tls"] = {"secretName": tls_secret}
    return {"apiVersion": API_VERSION, "kind": "IngressRoute", "metadata": metadata, "spec": spec}


def with_people_routes(route: dict, header: str, targets: dict[str, dict]) -> dict:
    """The public IngressRoute `route` with one route per header value in `targets` (value -> the
    service it goes to) ahead of its main route, with the same match plus the header's rule (base.py)
    and the main route's middlewares. Header routes written before are replaced; `targets` empty:
    only the main route is left."""
    spec = dict(route.get("spec") or {})
    routes = spec.get("routes") or []
    markers = (f"Header(`{header}`", f"HeaderRegexp(`{header}`")     # both: routes written by older versions
    main = next((r for r in routes if not any(m in str(r.get("match", "")) for m in markers)), None)
    if main is None:
        return route
    people = []
    for value, service in targets.items():
        base = main["match"] if "||" not in main["match"] else f"({main['match']})"
        people.append({"match": f"{base} && {traefik_people_rule(header, value)}", "kind": "Rule",
                       "priority": PEOPLE_PRIORITY, **({"middlewares": main["middlewares"]}
                                                         if main.get("middlewares") else {}),
                       "services": [service]})
    spec["routes"] = [*people, main]
    return {**route, "spec": spec}


class TraefikCrdRouter(Router):
    """Weights in the TraefikService `name`; the API server is reached through the platform's
    `apply_object(obj)` / `read_object(kind, name)` (its conflict checks and error messages)."""

    kind = "traefik-crd"

    def __init__(self, *, metadata: dict, services: dict[str, str], port: int,
                 apply_object: Callable[[dict], object], read_object: Callable[[str, str], dict | None],
                 people: PeopleRouting | None = None):
        self.metadata = metadata
        self.people = people or PeopleRouting()
        self.name = metadata["name"]
        self.services = services            # color -> Service name
        self.port = port
        self._apply = apply_object
        self._read = read_object

    def build(self, weights: dict[str, int]) -> dict:
        return weighted_service(dict(self.metadata),
                                [(self.services[c], self.port, int(weights.get(c, 0))) for c in self.services],
                                sticky_cookie=self.people.cookie if self.people.sticky else None)

    def apply(self, backends: dict[str, str], weights: dict[str, int], maintenance: bool) -> None:
        if maintenance:
            raise OperationFailed("the kubernetes router has no maintenance mode")
        self._apply(self.build(weights))
        self._apply_people(weights)

    def _apply_people(self, weights: dict[str, int]) -> None:
        """The canary header (PeopleRouting) as routes in the public IngressRoute: while both colors
        carry traffic (a canary step), `always` goes to the canary's Service and `never` to the stable
        one's. Colors at weight 0 are not known to run here, so outside a canary there are no header
        routes. Nothing is written when the public route does not exist yet or already says this."""
        public = self._read("IngressRoute", self.name)
        if public is None:
            return
        serving = {c: "" for c, w in weights.items() if int(w) > 0 and c in self.services}
        targets = {value: {"name": self.services[color], "port": self.port}
                   for value, color in people_targets(serving, weights).items()}
        wanted = with_people_routes(public, self.people.header, targets)
        if wanted["spec"] != public.get("spec"):
            self._apply({"apiVersion": API_VERSION, "kind": "IngressRoute", "metadata": dict(self.metadata),
                         "spec": wanted["spec"]})

    def confirm(self, weights: dict[str, int], timeout: float) -> float:
        """Read the TraefikService back from the API server until it shows `weights`. Traefik's CRD
        provider applies what the API server holds; that last hop is not observable from here."""
        want = {c: int(w) for c, w in weights.items() if int(w) > 0}
        start = time.monotonic()
        while True:
            if self.live_weights() == want:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise OperationFailed(f"TraefikService {self.name} does not show weights "
                                      f"{json.dumps(weights)} within {timeout:.0f}s")
            time.sleep(0.1)

    def live_weights(self) -> dict[str, int] | None:
        by_service = member_weights(self._read("TraefikService", self.name))
        colors = {name: color for color, name in self.services.items()}
        return {colors[n]: w for n, w in by_service.items() if n in colors and w > 0}

    def desired(self) -> RouterState:
        return RouterState(weights=self.live_weights() or {})

    def ready(self) -> bool:
        return self._read("IngressRoute", self.name) is not None

    def snapshot(self) -> str | None:
        found = self._read("TraefikService", self.name)
        return json.dumps(found) if found else None

    def restore(self, text: str) -> None:
        data = json.loads(text)
        data["metadata"] = dict(self.metadata)   # no stale resourceVersion
        self._apply(data)
