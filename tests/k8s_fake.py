"""A small in-process fake of the Kubernetes API, for tests only.

No control plane can run on these machines, so this is the one fake in the suite. It speaks
real HTTP on 127.0.0.1 and the real `kubernetes` client talks to it through a kubeconfig, so
everything from config loading to (de)serialisation and error statuses is the client's own. It
implements only what ragops uses, with the API server's semantics for those:

- create (POST) of an existing name -> 409 AlreadyExists; GET of a missing one -> 404 NotFound;
- replace (PUT) whose metadata.resourceVersion is stale -> 409 Conflict; DELETE with a stale
  preconditions.resourceVersion -> 409 Conflict; every write bumps resourceVersion;
- PATCH with merge-patch / strategic-merge-patch bodies (maps merged, lists replaced: enough for
  the patches ragops sends);
- a Deployment "controller": a spec change bumps metadata.generation, and `ready_delay` seconds
  later status reports observedGeneration, updated/ready/available replicas (never ready when
  the image tag is in `never_ready`), like a rollout.

`PodStub` is what the fake cluster's pods would answer: one HTTP server where /<color>/... acts
as the service of that color while its Deployment has ready replicas (version from the
Deployment's label, RAG_FAULT_* from its env), enough for readiness, the smoke suite and the
metric analysis. It stands in for the pods behind a preview route.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                  r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKubernetes:
    def __init__(self, ready_delay: float = 0.3):
        self.ready_delay = ready_delay
        self.never_ready: set[str] = set()        # image tags whose pods never become ready
        self.objects: dict[tuple, dict] = {}      # (group/version, ns, plural, name) -> object
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for assertions
        self.lock = threading.RLock()
        self._rv = 100
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def write_kubeconfig(self, path: Path, context: str = "fake", namespace: str = "rag") -> Path:
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
        }))
        return path

    # ---- store --------------------------------------------------------------------------------
    def get(self, api: str, ns: str, plural: str, name: str) -> dict | None:
        with self.lock:
            obj = self.objects.get((api, ns, plural, name))
            return json.loads(json.dumps(obj)) if obj else None

    def deployment(self, ns: str, name: str) -> dict | None:
        return self.get("apps/v1", ns, "deployments", name)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _rollout(self, key: tuple, generation: int) -> None:
        """The Deployment controller: after ready_delay, report the rollout of `generation`."""
        def finish():
            with self.lock:
                obj = self.objects.get(key)
                if not obj or obj["metadata"].get("generation") != generation:
                    return
                replicas = int(obj["spec"].get("replicas", 1))
                image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
                ready = 0 if image.rsplit(":", 1)[-1] in self.never_ready else replicas
                status = {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas}
                if ready:
                    status.update(readyReplicas=ready, availableReplicas=ready)
                    status["conditions"] = [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]
                elif replicas:
                    status["unavailableReplicas"] = replicas
                    status["conditions"] = [{"type": "Available", "status": "False",
                                             "reason": "MinimumReplicasUnavailable",
                                             "message": "Deployment does not have minimum availability."}]
                obj["status"] = status
                obj["metadata"]["resourceVersion"] = self._next_rv()
                obj["metadata"].setdefault("annotations", {})["fake.ready-at"] = str(time.time())
        timer = threading.Timer(self.ready_delay, finish)
        timer.daemon = True
        timer.start()

    def _after_write(self, key: tuple, obj: dict, old: dict | None) -> None:
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        if key[2] == "deployments":
            changed = old is None or old.get("spec") != obj.get("spec")
            meta["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + (1 if changed else 0)
            obj["status"] = (old or {}).get("status") or {"observedGeneration": 0}
            if changed:
                self._rollout(key, meta["generation"])

    # ---- HTTP ---------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}") if length else {}

            def _route(self):
                path, _, query = self.path.partition("?")
                fake.requests.append((self.command, path))
                match = PATH.match(path)
                if not match:
                    self._status(404, "NotFound", f"the server could not find the requested resource ({path})")
                    return None
                api = match["cv"] or f"{match['group']}/{match['version']}"
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                return (api, match["ns"], match["plural"], match["name"], match["sub"], params)

            def do_GET(self):
                route = self._route()
                if not route:
                    return
                api, ns, plural, name, sub, params = route
                with fake.lock:
                    if sub == "log" and (api, ns, plural, name) in fake.objects:
                        data = f"log line of pod {name}\n".encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "text/plain")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    if name is None:
                        selector = dict(s.split("=", 1) for s in unquote(params.get("labelSelector", "")).split(",")
                                        if "=" in s)
                        items = [o for (a, n, p, _), o in fake.objects.items() if (a, n, p) == (api, ns, plural)
                                 and all(o["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
                        self._send(200, {"kind": "List", "apiVersion": api, "metadata": {"resourceVersion": str(fake._rv)},
                                         "items": items})
                        return
                    obj = fake.objects.get((api, ns, plural, name))
                    if obj is None:
                        self._status(404, "NotFound", f'{plural} "{name}" not found')
                        return
                    self._send(200, obj)

            def do_POST(self):
                route = self._route()
                if not route:
                    return
                api, ns, plural, _name, _sub, _ = route
                body = self._body()
                name = body.get("metadata", {}).get("name")
                key = (api, ns, plural, name)
                with fake.lock:
                    if key in fake.objects:
                        self._status(409, "AlreadyExists", f'{plural} "{name}" already exists')
                        return
                    body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()),
                                            creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    fake._after_write(key, body, None)
                    fake.objects[key] = body
                    self._send(201, body)

            def do_PUT(self):
                route = self._route()
                if not route:
                    return
                api, ns, plural, name, _sub, _ = route
                body = self._body()
                key = (api, ns, plural, name)
                with fake.lock:
                    old = fake.objects.get(key)
                    if old is None:
                        self._status(404, "NotFound", f'{plural} "{name}" not found')
                        return
                    expected = body.get("metadata", {}).get("resourceVersion")
                    if expected and expected != old["metadata"]["resourceVersion"]:
                        self._status(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": '
                                                      "the object has been modified; please apply your changes "
                                                      "to the latest version and try again")
                        return
                    for keep in ("uid", "creationTimestamp", "namespace"):
                        body["metadata"][keep] = old["metadata"].get(keep)
                    fake._after_write(key, body, old)
                    fake.objects[key] = body
                    self._send(200, body)

            def do_PATCH(self):
                route = self._route()
                if not route:
                    return
                api, ns, plural, name, _sub, _ = route
                kind = self.headers.get("Content-Type", "")
                if "json-patch" in kind:
                    self._status(415, "UnsupportedMediaType", "the fake takes merge patches only")
                    return
                body = self._body()
                key = (api, ns, plural, name)
                with fake.lock:
                    old = fake.objects.get(key)
                    if old is None:
                        self._status(404, "NotFound", f'{plural} "{name}" not found')
                        return
                    new = merge_patch(json.loads(json.dumps(old)), body)
                    fake._after_write(key, new, old)
                    fake.objects[key] = new
                    self._send(200, new)

            def do_DELETE(self):
                route = self._route()
                if not route:
                    return
                api, ns, plural, name, _sub, _ = route
                body = self._body()
                key = (api, ns, plural, name)
                with fake.lock:
                    old = fake.objects.get(key)
                    if old is None:
                        self._status(404, "NotFound", f'{plural} "{name}" not found')
                        return
                    expected = (body.get("preconditions") or {}).get("resourceVersion")
                    if expected and expected != old["metadata"]["resourceVersion"]:
                        self._status(409, "Conflict", f'Precondition failed: ResourceVersion in precondition: '
                                                      f'{expected}, ResourceVersion in object meta: '
                                                      f'{old["metadata"]["resourceVersion"]}')
                        return
                    del fake.objects[key]
                    self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                     "details": {"name": name, "kind": plural}})

        return Handler


class PodStub:
    """What the pods of each color answer, behind /<color>/ (see the module docstring)."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))
    HEADERS: ClassVar[dict[str, str]] = {
        "Strict-Transport-Security": "max-age=31536000", "Content-Security-Policy": "default-src 'none'",
        "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}

    def __init__(self, fake: FakeKubernetes, namespace: str, project: str, api_key: str):
        self.fake, self.namespace, self.project, self.api_key = fake, namespace, project, api_key
        self.docs: dict[str, dict[int, str]] = {"blue": {}, "green": {}}
        self.counts: dict[tuple, int] = {}      # (color, generation, route, status) -> n
        self.hist: dict[tuple, list[int]] = {}  # (color, generation) -> bucket counts
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url_pattern = f"http://127.0.0.1:{self.port}/{{color}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def pods(self, color: str) -> dict | None:
        """(version, env, ready_since, generation) of the color's ready pods, or None."""
        dep = self.fake.deployment(self.namespace, f"{self.project}-{color}")
        if not dep or not (dep.get("status") or {}).get("readyReplicas"):
            return None
        container = dep["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        ready_at = float(dep["metadata"].get("annotations", {}).get("fake.ready-at", "0"))
        return {"version": dep["metadata"]["labels"].get("ragops.version"), "env": env, "ready_at": ready_at,
                "generation": dep["metadata"]["generation"]}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, color: str, pods: dict | None, route: str, code: int, body) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in stub.HEADERS.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                if pods and route not in ("/metrics",):
                    with stub.lock:
                        gen = (color, pods["generation"])
                        stub.counts[(*gen, route, code)] = stub.counts.get((*gen, route, code), 0) + 1
                        hist = stub.hist.setdefault(gen, [0] * len(stub.BUCKETS))
                        for index in range(len(stub.BUCKETS)):
                            hist[index] += 1   # every stub answer is faster than 5 ms

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = self.path.split("?")[0].split("/", 2)
                color, path = parts[1], "/" + (parts[2] if len(parts) > 2 else "")
                pods = stub.pods(color) if color in ("blue", "green") else None
                if pods is None:
                    self._answer(color, None, path, 503, "no ready endpoints for this color")
                    return
                env = pods["env"]
                faulty = (float(env.get("RAG_FAULT_ERROR_RATE", "0") or 0) > random.random()
                          and time.time() - pods["ready_at"] >= float(env.get("RAG_FAULT_AFTER_S", "0") or 0))
                if path in ("/healthz", "/readyz"):
                    return self._answer(color, pods, path, 200, {"status": "ok"})
                if path == "/metrics":
                    return self._answer(color, pods, path, 200, stub.metrics(color, pods))
                if faulty:
                    return self._answer(color, pods, path, 500, {"error": "injected fault (RAG_FAULT_ERROR_RATE)"})
                if path == "/version":
                    return self._answer(color, pods, path, 200, {"version": pods["version"], "color": color})
                if not path.startswith("/api/"):
                    return self._answer(color, pods, "unmatched", 404, {"detail": "not found"})
                if self.headers.get("X-API-Key") != stub.api_key:
                    return self._answer(color, pods, path, 401, {"detail": "missing or invalid API key"})
                docs = stub.docs[color]
                if method == "POST" and path == "/api/v1/documents":
                    doc_id = len(docs) + 1
                    docs[doc_id] = json.loads(raw or b"{}").get("content", "")
                    return self._answer(color, pods, path, 201, {"id": doc_id, "chunks": 1})
                if method == "POST" and path == "/api/v1/query":
                    words = set(json.loads(raw or b"{}").get("query", "").split())
                    hits = [{"document_id": i, "score": 1.0} for i, text in docs.items() if words & set(text.split())]
                    return self._answer(color, pods, path, 200, {"results": hits})
                match = re.fullmatch(r"/api/v1/documents/(\d+)", path)
                if match:
                    doc_id = int(match.group(1))
                    route = "/api/v1/documents/{id}"
                    if method == "DELETE" and doc_id in docs:
                        del docs[doc_id]
                        return self._answer(color, pods, route, 204, "")
                    if method == "GET" and doc_id in docs:
                        return self._answer(color, pods, route, 200, {"id": doc_id})
                    return self._answer(color, pods, route, 404, {"detail": "not found"})
                return self._answer(color, pods, "unmatched", 404, {"detail": "not found"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        return Handler

    def metrics(self, color: str, pods: dict) -> str:
        """Prometheus text in the service's names (counters start over with each rollout)."""
        gen = (color, pods["generation"])
        lines = ["# TYPE rag_http_requests counter"]
        with self.lock:
            for (c, g, route, status), n in sorted(self.counts.items(), key=str):
                if (c, g) == gen:
                    lines.append(f'rag_http_requests_total{{method="GET",route="{route}",status="{status}"}} {n}')
            hist = self.hist.get(gen, [0] * len(self.BUCKETS))
        lines.append("# TYPE rag_http_request_duration_seconds histogram")
        for le, n in zip(self.BUCKETS, hist, strict=True):
            bound = "+Inf" if le == float("inf") else repr(le)
            lines.append(f'rag_http_request_duration_seconds_bucket{{route="all",le="{bound}"}} {n}')
        lines.append(f'rag_http_request_duration_seconds_count{{route="all"}} {hist[-1]}')
        lines.append(f'rag_http_request_duration_seconds_sum{{route="all"}} {hist[-1] * 0.001}')
        lines += ["# TYPE rag_http_requests_in_flight gauge", "rag_http_requests_in_flight 0"]
        return "\n".join(lines) + "\n"
