"""The Kubernetes objects ragops creates, as plain dicts (the JSON the API server takes).

Plain Python rather than a template language: the platform fills them with live values (version,
deploy id, replicas) and reads the same keys back, and tests validate exactly what is sent. The
files under templates/kubernetes/ are these dicts rendered for the shipped `production`
environment (`render_templates`); a unit test keeps them identical.

Per color (blue, green):
  Deployment <project>-<color>           the API pods (labels app, ragops.color, ragops.version;
                                         annotation ragops.deploy_id): the cluster is the record
  Deployment <project>-<color>-worker    the ingestion workers of the same version
  Service <project>-<color>              ClusterIP, port 80 -> the pods' http port
  HorizontalPodAutoscaler, PodDisruptionBudget <project>-<color>, and <project>-<color>-worker
  IngressRoute <project>-preview-<color> only with kubernetes.preview_host or preview_path
                                         (the latter with the Middleware <project>-preview-strip)
Shared:
  Secret <project>-service               RAG_DATABASE_URL, RAG_API_KEYS, service.secrets (envFrom)
  TraefikService <project>               the weighted service: the weights ARE the traffic split
  IngressRoute <project>, Middleware <project>-retry   the public route through it
  NetworkPolicy <project>-api, <project>-worker

Routing object: Traefik's CRDs (IngressRoute + a weighted TraefikService, built by
ragops.routing.traefik_crd), not Gateway API. An HTTPRoute's backendRefs weights would also work,
but need the Gateway API CRDs plus a Gateway and a controller that implements it; with Traefik as
the ingress controller the CRDs are already there.
"""
from __future__ import annotations

import copy
import json
import math

from ragops.platforms.base import COLORS
from ragops.routing import traefik_crd as crd
from ragops.routing.base import PeopleRouting

CONTAINER_PORT = 8000          # the service image's port (service/Dockerfile: EXPOSE 8000)
SERVICE_PORT = 80
RUN_AS = 10001                 # the image's non-root user (service/Dockerfile)
PRESTOP_SECONDS = 5            # endpoints are removed asynchronously: keep serving a moment first

# the production guide's "right-sized" example and its API scaling triggers
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
HPA_MIN, HPA_MAX, HPA_CPU, HPA_MEMORY = 2, 20, 70, 80
# and its worker trigger: 1..50 workers on queue length, 100 queued jobs per worker
WORKER_HPA_MIN, WORKER_HPA_MAX, WORKER_QUEUE_TARGET = 1, 50, 100
QUEUE_METRIC = "rag_ingest_queue_length"
# the worker touches this file every loop (RAG_WORKER_HEARTBEAT); older than this, it is stuck
HEARTBEAT_FILE, HEARTBEAT_STALE_SECONDS = "/tmp/worker-heartbeat", 60

LABEL_APP = "app"
LABEL_COLOR = "ragops.color"
LABEL_VERSION = "ragops.version"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANN_DEPLOY_ID = "ragops.deploy_id"
ANN_STARTED_AT = "ragops.started_at"
ANN_ENV = "ragops.env"                     # the non-secret --set overrides a color was started with
SECRET_KEYS = ("RAG_DATABASE_URL", "RAG_API_KEYS")


# ---- names ---------------------------------------------------------------------------------------
def color_name(config, color: str) -> str:
    return f"{config.project}-{color}"


def worker_name(config, color: str) -> str:
    return f"{config.project}-{color}-worker"


def secret_name(config) -> str:
    return f"{config.project}-service"


def router_name(config) -> str:
    return config.project


def lease_name(config) -> str:
    return f"{config.project}-deploy-lock"


def image_ref(config, version: str) -> str:
    repo = config.service.image or f"{config.project}/rag-service"
    return f"{repo}:{version}"


def grace_seconds(config) -> int:
    """Pod terminationGracePeriodSeconds: preStop pause + the drain timeout + a margin."""
    return PRESTOP_SECONDS + math.ceil(config.deploy.drain_timeout) + 5


def meta(config, name: str, labels: dict | None = None, annotations: dict | None = None) -> dict:
    data = {"name": name, "namespace": config.env.namespace,
            "labels": {LABEL_APP: config.project, "app.kubernetes.io/managed-by": "ragops", **(labels or {})}}
    if annotations:
        data["annotations"] = annotations
    return data


def _selector(config, color: str, component: str) -> dict:
    return {LABEL_APP: config.project, LABEL_COLOR: color, LABEL_COMPONENT: component}


# ---- per color -----------------------------------------------------------------------------------
def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict:
    return {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _env(config, color: str, version: str, extra: dict[str, str] | None) -> list[dict]:
    service = config.service
    values = {"RAG_VERSION": version, "RAG_COLOR": color,
              "RAG_RATE_LIMIT_PER_MINUTE": str(service.rate_limit_per_minute),
              "RAG_CORS_ORIGINS": ",".join(service.cors_origins),
              "RAG_GRACEFUL_TIMEOUT": str(int(config.deploy.drain_timeout)),
              "PYTHONUNBUFFERED": "1",
              # ragops reads a color's /metrics through its preview route (a proxy) without a key;
              # service.env may set "proxied" where analysis reads the Service directly
              "RAG_METRICS_AUTH": "never", **service.env, **(extra or {})}
    return [{"name": k, "value": str(v)} for k, v in values.items()]


def deployment(config, color: str, version: str, *, deploy_id: str, started_at: str,
               env: dict[str, str] | None = None, replicas: int | None = None) -> dict:
    """The API pods of one color. Secrets arrive through envFrom the Secret, never in the spec.
    replicas None leaves the count to the HPA (no `replicas` key); the platform sets it explicitly
    only when it scales a color from or to 0."""
    service = config.service
    selector = _selector(config, color, "api")
    labels = {**selector, LABEL_VERSION: version}
    annotations = {ANN_DEPLOY_ID: deploy_id, ANN_STARTED_AT: started_at,
                   ANN_ENV: json.dumps(env or {}, sort_keys=True)}
    probe = {"httpGet": {"path": service.readiness_path, "port": "http"},
             "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}
    container = {
        "name": "api",
        "image": image_ref(config, version),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "ragservice.serve", "--host", "0.0.0.0", "--port", str(CONTAINER_PORT)],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(config, color, version, env),
        "envFrom": [{"secretRef": {"name": secret_name(config)}}],
        "startupProbe": {"httpGet": {"path": service.health_path, "port": "http"}, "periodSeconds": 2,
                         "failureThreshold": max(3, math.ceil(service.startup_timeout / 2))},
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": service.health_path, "port": "http"},
                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        # the Service and Traefik drop a terminating pod asynchronously: keep serving for a moment,
        # then SIGTERM lets in-flight requests finish (RAG_GRACEFUL_TIMEOUT)
        "lifecycle": {"preStop": {"exec": {"command": ["python", "-c",
                                                       f"import time; time.sleep({PRESTOP_SECONDS})"]}}},
        "resources": copy.deepcopy(RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(config, color_name(config, color), labels, annotations),
        "spec": {
            **_replicas(replicas),
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": max(60, int(config.deploy.health_timeout) * 2),
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels, "annotations": {ANN_DEPLOY_ID: deploy_id}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": grace_seconds(config),
                    "securityContext": _pod_security(),
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                   "whenUnsatisfiable": "ScheduleAnyway",
                                                   "labelSelector": {"matchLabels": selector}}],
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def _replicas(replicas: int | None) -> dict:
    """`replicas` only when given: an HPA owns the count of a running color."""
    return {} if replicas is None else {"replicas": replicas}


def _heartbeat_probe(period: int, failures: int) -> dict:
    """An exec probe: the worker's heartbeat file is fresh. A worker that lost the database still
    loops (backing off) and touches it; one stuck in a job or a dead loop does not."""
    check = (f"import os, sys, time; "
             f"sys.exit(time.time() - os.path.getmtime({HEARTBEAT_FILE!r}) > {HEARTBEAT_STALE_SECONDS})")
    return {"exec": {"command": ["python", "-c", check]}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def worker_deployment(config, color: str, version: str, *, deploy_id: str, started_at: str,
                      env: dict[str, str] | None = None, replicas: int | None = None) -> dict:
    """The ingestion workers of one color (same image and version, no HTTP port). Probes read the
    heartbeat file the worker touches; replicas as for deployment() (None: the worker HPA's)."""
    selector = _selector(config, color, "worker")
    labels = {**selector, LABEL_VERSION: version}
    container = {
        "name": "worker",
        "image": image_ref(config, version),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "ragservice.worker"],
        "env": _env(config, color, version, {"RAG_WORKER_HEARTBEAT": HEARTBEAT_FILE, **(env or {})}),
        "startupProbe": _heartbeat_probe(period=2, failures=max(3, math.ceil(config.service.startup_timeout / 2))),
        "readinessProbe": _heartbeat_probe(period=10, failures=3),
        "livenessProbe": _heartbeat_probe(period=20, failures=3),
        "envFrom": [{"secretRef": {"name": secret_name(config)}}],
        "resources": copy.deepcopy(RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(config, worker_name(config, color), labels,
                          {ANN_DEPLOY_ID: deploy_id, ANN_STARTED_AT: started_at}),
        "spec": {
            **_replicas(replicas),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": {ANN_DEPLOY_ID: deploy_id}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": grace_seconds(config),
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def service(config, color: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(config, color_name(config, color), {LABEL_COLOR: color, LABEL_COMPONENT: "api"}),
        "spec": {"type": "ClusterIP", "selector": _selector(config, color, "api"),
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def hpa(config, color: str) -> dict:
    """The guide's API scaling triggers: 2..20 replicas, CPU 70 %, memory 80 %. Its custom
    requests_per_second trigger needs a metrics adapter (prometheus-adapter) and is not rendered.
    Kubernetes does not autoscale a Deployment at 0 replicas, so the idle color stays at 0."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": meta(config, color_name(config, color), {LABEL_COLOR: color, LABEL_COMPONENT: "api"}),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": color_name(config, color)},
            "minReplicas": HPA_MIN, "maxReplicas": HPA_MAX,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                                                  "target": {"type": "Utilization", "averageUtilization": HPA_CPU}}},
                {"type": "Resource", "resource": {"name": "memory",
                                                  "target": {"type": "Utilization", "averageUtilization": HPA_MEMORY}}},
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def worker_hpa(config, color: str) -> dict:
    """The guide's worker trigger: 1..50 workers, 100 queued jobs each. The service does not export
    the queue length itself: a metrics adapter serves `rag_ingest_queue_length` as an External
    metric (e.g. prometheus-adapter over a postgres_exporter query counting ingest_jobs rows with
    status 'queued'). As for the API, an idle color at 0 workers is not scaled."""
    metric = {"name": QUEUE_METRIC, "selector": {"matchLabels": {LABEL_APP: config.project}}}
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": meta(config, worker_name(config, color), {LABEL_COLOR: color, LABEL_COMPONENT: "worker"}),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker_name(config, color)},
            "minReplicas": WORKER_HPA_MIN, "maxReplicas": WORKER_HPA_MAX,
            "metrics": [{"type": "External", "external": {
                "metric": metric, "target": {"type": "AverageValue", "averageValue": str(WORKER_QUEUE_TARGET)}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def pdb(config, color: str, component: str = "api") -> dict:
    """maxUnavailable (not minAvailable): a color scaled to 0 must not block node drains."""
    name = color_name(config, color) if component == "api" else worker_name(config, color)
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta(config, name, {LABEL_COLOR: color, LABEL_COMPONENT: component}),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(config, color, component)}},
    }


def color_scaling(config, color: str) -> list[dict]:
    """The HPAs and PDBs of one color (the worker's only when the environment runs workers)."""
    objects = [hpa(config, color), pdb(config, color)]
    if config.service.workers:
        objects += [worker_hpa(config, color), pdb(config, color, "worker")]
    return objects


def preview_route(config, color: str) -> dict | None:
    """A route straight to one color (no weights), so ragops can check it before it gets traffic:
    by host (kubernetes.preview_host), else by path prefix, stripped (kubernetes.preview_path)."""
    k8s = config.env.kubernetes
    name = f"{config.project}-preview-{color}"
    services = [{"name": color_name(config, color), "port": SERVICE_PORT}]
    if k8s.preview_host:
        host = k8s.preview_host.format(color=color, project=config.project, namespace=config.env.namespace)
        return crd.ingress_route(meta(config, name, {LABEL_COLOR: color}), entry_points=k8s.entry_points,
                                 match=f"Host(`{host}`)", services=services, tls_secret=k8s.tls_secret)
    if k8s.preview_path:
        match = f"PathPrefix(`{preview_prefix(config, color)}`)"
        if k8s.host:
            match = f"Host(`{k8s.host}`) && {match}"
        return crd.ingress_route(meta(config, name, {LABEL_COLOR: color}), entry_points=k8s.entry_points,
                                 match=match, services=services, middlewares=[preview_strip_name(config)],
                                 tls_secret=k8s.tls_secret)
    return None


def preview_prefix(config, color: str) -> str:
    return config.env.kubernetes.preview_path.format(color=color, project=config.project,
                                                     namespace=config.env.namespace)


def preview_strip_name(config) -> str:
    return f"{config.project}-preview-strip"


def preview_strip(config) -> dict | None:
    """The Middleware that removes the preview path prefix, so a color sees its own paths."""
    if config.env.kubernetes.preview_host or not config.env.kubernetes.preview_path:
        return None
    return crd.strip_prefix_middleware(meta(config, preview_strip_name(config)),
                                       [preview_prefix(config, color) for color in COLORS])


# ---- shared --------------------------------------------------------------------------------------
def secret(config, values: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": meta(config, secret_name(config)), "stringData": dict(values)}


def weighted_service(config, weights: dict[str, int]) -> dict:
    return crd.weighted_service(meta(config, router_name(config)),
                                [(color_name(config, c), SERVICE_PORT, int(weights.get(c, 0))) for c in COLORS],
                                sticky_cookie=PeopleRouting().cookie if config.deploy.sticky else None)


def weights_of(traefik_service: dict | None, config) -> dict[str, int]:
    """Read the weights back from a TraefikService (a color that is not listed has weight 0)."""
    listed = crd.member_weights(traefik_service)
    return {c: listed.get(color_name(config, c), 0) for c in COLORS}


def retry_middleware(config) -> dict:
    return crd.retry_middleware(meta(config, f"{config.project}-retry"))


def public_route(config) -> dict:
    k8s = config.env.kubernetes
    return crd.ingress_route(meta(config, router_name(config)), entry_points=k8s.entry_points,
                             match=f"Host(`{k8s.host}`)" if k8s.host else "PathPrefix(`/`)",
                             services=[{"name": router_name(config), "kind": "TraefikService"}],
                             middlewares=[f"{config.project}-retry"], tls_secret=k8s.tls_secret)


def _db_ports(config) -> list[int]:
    nodes = [config.database.primary, *config.database.replicas]
    return sorted({n.port for n in nodes} | {5432})


def network_policies(config) -> list[dict]:
    """The guide's network layer: API pods take traffic only from the router (Traefik), the
    ragops deployer and Prometheus, on the http port; workers take none. Both may only reach DNS
    and PostgreSQL."""
    egress = [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"ports": [{"protocol": "TCP", "port": p} for p in _db_ports(config)]},
    ]
    api = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta(config, f"{config.project}-api", {LABEL_COMPONENT: "api"}),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_APP: config.project, LABEL_COMPONENT: "api"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}},
                    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ragops"}}},
                ],
                "ports": [{"protocol": "TCP", "port": CONTAINER_PORT}],
            }],
            "egress": egress,
        },
    }
    worker = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta(config, f"{config.project}-worker", {LABEL_COMPONENT: "worker"}),
        "spec": {"podSelector": {"matchLabels": {LABEL_APP: config.project, LABEL_COMPONENT: "worker"}},
                 "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": egress},
    }
    return [api, worker]


# ---- what ragops itself may do in the namespace ------------------------------------------------------
RBAC_NAME = "ragops"
# (API group, resources, verbs): exactly the calls kubernetes.py makes, nothing cluster-wide
RBAC_RULES = [
    ("apps", ["deployments"], ["get", "create", "update", "patch", "delete"]),
    ("", ["services", "secrets"], ["get", "create", "update", "delete"]),
    ("", ["pods"], ["list"]),
    ("", ["pods/log"], ["get"]),
    ("autoscaling", ["horizontalpodautoscalers"], ["get", "create", "update", "delete"]),
    ("policy", ["poddisruptionbudgets"], ["get", "create", "update", "delete"]),
    ("networking.k8s.io", ["networkpolicies"], ["get", "create", "update", "delete"]),
    ("coordination.k8s.io", ["leases"], ["get", "create", "update", "delete"]),
    (crd.GROUP, sorted(crd.PLURALS.values()), ["get", "create", "update", "delete"]),
]


def rbac(config) -> list[dict]:
    """A least-privilege Role for ragops in its namespace, a ServiceAccount and their RoleBinding
    (an admin applies them once; ragops runs with the account's token)."""
    labels = {"app.kubernetes.io/name": "ragops"}
    rules = [{"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
             for group, resources, verbs in RBAC_RULES]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(config, RBAC_NAME, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(config, RBAC_NAME, labels),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(config, RBAC_NAME, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RBAC_NAME},
         "subjects": [{"kind": "ServiceAccount", "name": RBAC_NAME, "namespace": config.env.namespace}]},
    ]


# ---- what `up` applies, and the shipped templates --------------------------------------------------
def infrastructure(config) -> list[dict]:
    """Everything except the Secret and the color Deployments (those come with a version)."""
    objects: list[dict] = []
    for color in COLORS:
        objects += [service(config, color), *color_scaling(config, color)]
        route = preview_route(config, color)
        if route:
            objects.append(route)
    strip = preview_strip(config)
    objects += network_policies(config) + [retry_middleware(config), *([strip] if strip else []),
                                           public_route(config)]
    return objects


def render_templates(config, version: str | None = None) -> dict[str, list[dict]]:
    """file name -> documents, for templates/kubernetes/ (an example: blue live at 100 %, its
    replica counts left to the HPAs; green idle at 0)."""
    version = version or config.service.version
    deploy_id, started_at = "d-example", "1970-01-01T00:00:00+00:00"
    colors = {}
    for color in COLORS:
        replicas = None if color == "blue" else 0
        app = deployment(config, color, version, deploy_id=deploy_id, started_at=started_at, replicas=replicas)
        docs = [app]
        if config.service.workers:
            docs.append(worker_deployment(config, color, version, deploy_id=deploy_id, started_at=started_at,
                                          replicas=replicas))
        colors[f"color-{color}.yaml"] = [*docs, service(config, color), *color_scaling(config, color)]
        route = preview_route(config, color)
        if route:
            colors[f"color-{color}.yaml"].append(route)
    return {
        **colors,
        "routing.yaml": [weighted_service(config, {"blue": 100}), retry_middleware(config), public_route(config)],
        "network-policy.yaml": network_policies(config),
        "rbac.yaml": rbac(config),
        "secret.example.yaml": [secret(config, {k: "set by ragops from ragops.yaml references" for k in SECRET_KEYS})],
    }


ABOUT = {
    "color-blue.yaml": "The blue color: API and worker Deployments, Service, their HPAs and PDBs (live in this "
                       "example; the HPAs own the replica counts).",
    "color-green.yaml": "The green color, scaled to 0 (idle): ragops deploys the next version here.",
    "routing.yaml": "Traffic: the weighted TraefikService (ragops replaces it to switch), retry middleware, "
                    "public IngressRoute.",
    "network-policy.yaml": "The guide's network layer: who may reach the API and worker pods, and what they reach.",
    "rbac.yaml": "What ragops needs in its namespace (least privilege): a ServiceAccount, a Role and their "
                 "RoleBinding; an admin applies it once.",
    "secret.example.yaml": "The shape of the Secret ragops writes from ragops.yaml's references (values are "
                           "never rendered).",
}


SHIPPED = ("of the shipped ragops.yaml; do not edit by hand:\n"
           "# regenerate with `python -m ragops.platforms.k8s_manifests` (a unit test checks they match).")


def template_text(name: str, docs: list[dict], env_name: str, origin: str = SHIPPED) -> str:
    import yaml

    header = (f"# {ABOUT.get(name, name)}\n"
              f"# Rendered by ragops for environment `{env_name}` {origin}\n"
              f"# ragops applies the same objects itself (`ragops up`, `ragops deploy`) with live values.\n")
    docs = json.loads(json.dumps(docs))   # no shared sub-objects, so no YAML anchors
    return header + "".join("---\n" + yaml.safe_dump(doc, sort_keys=False, width=110) for doc in docs)


def write_templates(config, directory, version: str | None = None, origin: str = SHIPPED) -> list[str]:
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in render_templates(config, version).items():
        (directory / name).write_text(template_text(name, docs, config.env_name, origin))
        written.append(name)
    return written


if __name__ == "__main__":   # python -m ragops.platforms.k8s_manifests [ENV]
    import sys

    from ragops.config import load_config
    from ragops.resources import shipped_dir

    repo = shipped_dir("templates").parent   # the checkout: its ragops.yaml and templates/kubernetes
    env = sys.argv[1] if len(sys.argv) > 1 else "production"
    for written in write_templates(load_config(repo / "ragops.yaml", env), repo / "templates" / "kubernetes"):
        print(f"templates/kubernetes/{written}")
