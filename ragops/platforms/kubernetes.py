"""The kubernetes platform: the service's colors as Deployments, traffic split by Traefik.

The cluster is the source of truth: a color is the Deployment `<project>-<color>` (its labels
carry the version, its annotations the deploy id), the traffic split is the weighted
TraefikService `<project>`, the deploy lock is the Lease `<project>-deploy-lock`. Local files
under the state directory are only the deploy journal and history (a cache) and log snapshots.
The objects themselves are built in k8s_manifests.py (see there why Traefik's CRDs route).

How ragops reaches one color directly (readiness, the smoke suite, /metrics during analysis,
the in-flight gauge while draining), in this order:
  1. `kubernetes.color_url`, a pattern with {color} (also {project}, {namespace});
  2. `kubernetes.preview_host`: the preview route through the ingress, http(s)://<preview host>;
     ragops renders one IngressRoute per color for it; or `kubernetes.preview_path`: the same by
     path prefix under the public route's address (<router_url><preview_path>, prefix stripped);
  3. the color's Service by its cluster DNS name, http://<project>-<color>.<namespace>.svc: this
     works when ragops runs inside the cluster (a CI Job or the drill CronJob); from a laptop,
     set 1 or 2.

Through a Service or a preview route each request lands on one pod of the color, so readiness,
smoke and metrics sample the color rather than every pod: the rollout wait (every replica passed
its readiness probe) covers the pods, and stopping a color relies on Kubernetes' own graceful
termination (preStop pause, SIGTERM, terminationGracePeriodSeconds set at start from
deploy.drain_timeout) rather than on the in-flight gauge of one pod.

The `kubernetes` package is imported inside functions only: `ragops --help` never loads it.
"""
from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from ragops.config import Config
from ragops.errors import ConfigError, OperationFailed
from ragops.events import quiet as _noop
from ragops.platforms import k8s_manifests as m
from ragops.platforms.base import COLORS, ColorState, Platform, Progress, other_color, probe_color, with_weights
from ragops.routing import traefik_crd as crd
from ragops.routing.base import PeopleRouting


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# kind -> (API class attribute, method suffix) for built-in kinds; Traefik's CRDs by plural
BUILTIN = {
    "Deployment": ("apps", "deployment"),
    "Service": ("core", "service"),
    "Secret": ("core", "secret"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontal_pod_autoscaler"),
    "PodDisruptionBudget": ("policy", "pod_disruption_budget"),
    "NetworkPolicy": ("networking", "network_policy"),
    "Lease": ("coordination", "lease"),
}
CRDS = crd.PLURALS
CONFLICT = object()


def _subset(want, have) -> bool:
    """True when every key/value we set is already there (the server adds defaults, and drops an
    empty list or map: a NetworkPolicy's `ingress: []` comes back absent)."""
    if want in ([], {}) and have is None:
        return True
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_subset(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(_subset(a, b) for a, b in zip(want, have, strict=True))
    return want == have or str(want) == str(have)


class LeaseLock:
    """The deploy lock as a coordination.k8s.io Lease. `create` is the API server's atomic
    create (409 when one exists); `replace` and `delete` carry the resourceVersion they read, so
    a lease that changed hands in between is never overwritten (409 again). The full record
    (owner, pid, deploy id, expiry) is JSON in an annotation; holderIdentity and the renew time
    mirror it for kubectl users."""

    ANNOTATION = "ragops.lock"

    def __init__(self, platform: KubernetesPlatform):
        self.platform = platform
        self.name = m.lease_name(platform.config)

    def _lease(self, record: dict, resource_version: str | None = None) -> dict:
        meta = m.meta(self.platform.config, self.name, annotations={self.ANNOTATION: json.dumps(record)})
        if resource_version:
            meta["resourceVersion"] = resource_version
        created = record.get("expires_at", time.time()) - float(record.get("ttl") or 0)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": f"{record.get('owner')} pid {record.get('pid')}",
                         "leaseDurationSeconds": max(1, int(float(record.get("ttl") or 1))),
                         "acquireTime": _micro(created), "renewTime": _micro(time.time())}}

    def _get(self) -> tuple[dict | None, dict | None]:
        lease = self.platform._read("Lease", self.name)
        if lease is None:
            return None, None
        raw = (lease["metadata"].get("annotations") or {}).get(self.ANNOTATION)
        try:
            record = json.loads(raw) if raw else None
        except ValueError:
            record = None
        if record is None:   # a Lease someone else wrote: held, by whoever it names
            spec = lease.get("spec") or {}
            record = {"token": "?", "owner": spec.get("holderIdentity") or "unknown", "expires_at": time.time() + 60}
        return lease, record

    def read(self) -> dict | None:
        return self._get()[1]

    def create(self, record: dict) -> bool:
        return self.platform._create(self._lease(record), conflict_ok=True) is not CONFLICT

    def replace(self, expected_token: str, record: dict) -> bool:
        lease, current = self._get()
        if lease is None or current is None or current.get("token") != expected_token:
            return False
        body = self._lease(record, lease["metadata"]["resourceVersion"])
        result = self.platform._replace(body, conflict_ok=True, missing_ok=True)
        return result is not CONFLICT and result is not None

    def delete(self, expected_token: str | None = None) -> bool:
        lease, current = self._get()
        if lease is None:
            return False
        if expected_token is not None and (current is None or current.get("token") != expected_token):
            return False
        return self.platform._delete("Lease", self.name, resource_version=lease["metadata"]["resourceVersion"])


class KubernetesPlatform(Platform):
    name = "kubernetes"
    renders_manifests = True

    def __init__(self, config: Config):
        self.config = config
        self.ns = config.env.namespace
        self._client: Any = None   # a kubernetes.client.ApiClient (the SDK has no type information)
        self._apis: dict[str, object] = {}

    # ---- the API client ------------------------------------------------------------------------
    def client(self):
        if self._client is not None:
            return self._client
        from kubernetes import client
        from kubernetes import config as kconfig

        env = self.config.env
        where = f"environments.{self.config.env_name}"
        configuration = client.Configuration()
        try:
            if env.kubeconfig:
                path = self.config.resolve_path(env.kubeconfig)
                if not path.exists():
                    raise ConfigError(f"{where}.kubeconfig: {path} does not exist")
                kconfig.load_kube_config(config_file=str(path), context=env.context,
                                         client_configuration=configuration)
            else:
                try:
                    kconfig.load_kube_config(context=env.context, client_configuration=configuration)
                except (kconfig.ConfigException, FileNotFoundError, OSError):
                    if env.context:
                        raise
                    kconfig.load_incluster_config(client_configuration=configuration)
        except kconfig.ConfigException as exc:
            key = "context" if env.context and "context" in str(exc).lower() else "kubeconfig"
            raise ConfigError(f"{where}.{key}: cannot load the Kubernetes configuration: {str(exc)[:200]}") from None
        self._client = client.ApiClient(configuration)
        return self._client

    def _api(self, group: str):
        if group not in self._apis:
            from kubernetes import client

            cls = {"apps": client.AppsV1Api, "core": client.CoreV1Api, "custom": client.CustomObjectsApi,
                   "coordination": client.CoordinationV1Api, "autoscaling": client.AutoscalingV2Api,
                   "policy": client.PolicyV1Api, "networking": client.NetworkingV1Api}[group]
            self._apis[group] = cls(self.client())
        return self._apis[group]

    def _call(self, what: str, func, *args, missing_ok: bool = False, conflict_ok: bool = False,
              raw: bool = False, **kwargs):
        """One API call with JSON in and out (plain dicts, the API's own field names)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            response = func(*args, _preload_content=False, _request_timeout=(5, 30), **kwargs)
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            if exc.status == 409 and conflict_ok:
                return CONFLICT
            try:
                message = json.loads(exc.body or "{}").get("message") or exc.reason
            except ValueError:
                message = exc.reason
            hint = None
            if exc.status in (401, 403):
                hint = (f"the credentials of context {self.config.env.context or '(current)'} may not "
                        f"{what} in namespace {self.ns} (RBAC)")
            raise OperationFailed(f"kubernetes API: {what}: {exc.status} {message}", hint=hint) from None
        except Urllib3Error as exc:
            host = self.client().configuration.host
            raise OperationFailed(f"kubernetes API at {host} is not reachable ({what}): "
                                  f"{type(exc).__name__}") from None
        data = response.data
        if raw:
            return data.decode(errors="replace")
        return json.loads(data) if data else {}

    # generic verbs over built-in kinds and Traefik's CRDs
    def _target(self, kind: str, verb: str):
        if kind in CRDS:
            custom = self._api("custom")
            fn = {"read": custom.get_namespaced_custom_object, "create": custom.create_namespaced_custom_object,
                  "replace": custom.replace_namespaced_custom_object,
                  "delete": custom.delete_namespaced_custom_object}[verb]
            return fn, (crd.GROUP, crd.VERSION, self.ns, CRDS[kind])
        group, suffix = BUILTIN[kind]
        return getattr(self._api(group), f"{verb}_namespaced_{suffix}"), None

    def _read(self, kind: str, name: str) -> dict | None:
        fn, prefix = self._target(kind, "read")
        args = (*prefix, name) if prefix else (name, self.ns)
        return self._call(f"read {kind} {name}", fn, *args, missing_ok=True)

    def _create(self, obj: dict, conflict_ok: bool = False):
        fn, prefix = self._target(obj["kind"], "create")
        args = (*prefix, obj) if prefix else (self.ns, obj)
        return self._call(f"create {obj['kind']} {obj['metadata']['name']}", fn, *args, conflict_ok=conflict_ok)

    def _replace(self, obj: dict, conflict_ok: bool = False, missing_ok: bool = False):
        name = obj["metadata"]["name"]
        fn, prefix = self._target(obj["kind"], "replace")
        args = (*prefix, name, obj) if prefix else (name, self.ns, obj)
        return self._call(f"replace {obj['kind']} {name}", fn, *args, conflict_ok=conflict_ok,
                          missing_ok=missing_ok)

    def _delete(self, kind: str, name: str, resource_version: str | None = None) -> bool:
        fn, prefix = self._target(kind, "delete")
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        args = (*prefix, name) if prefix else (name, self.ns)
        result = self._call(f"delete {kind} {name}", fn, *args, body=body, missing_ok=True, conflict_ok=True)
        return result is not None and result is not CONFLICT

    def _patch_deployment(self, name: str, patch: dict) -> dict | None:
        return self._call(f"patch Deployment {name}", self._api("apps").patch_namespaced_deployment, name,
                          self.ns, patch, missing_ok=True, _content_type="application/merge-patch+json")

    def _apply(self, obj: dict) -> str:
        """Create or replace; 'created', 'updated' or 'unchanged' (nothing sent when unchanged)."""
        for _ in range(3):
            current = self._read(obj["kind"], obj["metadata"]["name"])
            if current is None:
                if self._create(obj, conflict_ok=True) is not CONFLICT:
                    return "created"
                continue
            if self._unchanged(obj, current):
                return "unchanged"
            body = json.loads(json.dumps(obj))
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if obj["kind"] == "Service":   # the allocated cluster IP is immutable: carry it over
                for key in ("clusterIP", "clusterIPs"):
                    if key in (current.get("spec") or {}):
                        body["spec"][key] = current["spec"][key]
            if self._replace(body, conflict_ok=True) is not CONFLICT:
                return "updated"
        raise OperationFailed(f"{obj['kind']} {obj['metadata']['name']} kept changing while ragops updated it")

    @staticmethod
    def _unchanged(want: dict, have: dict) -> bool:
        if not _subset(want["metadata"].get("labels") or {}, have["metadata"].get("labels") or {}):
            return False
        if not _subset(want["metadata"].get("annotations") or {}, have["metadata"].get("annotations") or {}):
            return False
        if want["kind"] == "Secret":
            stored = have.get("stringData") or {k: base64.b64decode(v).decode() for k, v in (have.get("data") or {}).items()}
            return stored == want.get("stringData")
        return _subset(want.get("spec"), have.get("spec"))

    # ---- addresses, journal, lock ---------------------------------------------------------------
    def color_url(self, color: str) -> str:
        k8s = self.config.env.kubernetes
        scheme = "https" if k8s.tls_secret else "http"
        if k8s.color_url:
            pattern = k8s.color_url
        elif k8s.preview_host:
            pattern = f"{scheme}://{k8s.preview_host}"
        elif k8s.preview_path:
            pattern = self.router_url() + k8s.preview_path
        else:
            pattern = "http://{project}-{color}.{namespace}.svc"
        return pattern.format(color=color, project=self.config.project, namespace=self.ns).rstrip("/")

    def router_url(self) -> str:
        k8s = self.config.env.kubernetes
        if k8s.router_url:
            return k8s.router_url.rstrip("/")
        if k8s.host:
            return f"{'https' if k8s.tls_secret else 'http'}://{k8s.host}"
        return "http://traefik.traefik.svc"   # the Traefik Helm chart's Service, from inside the cluster

    def journal_dir(self) -> Path:
        path = self.config.state_dir / "deploy"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_backend(self) -> LeaseLock:
        return LeaseLock(self)

    # ---- router (the weighted TraefikService) -------------------------------------------------------
    def routers(self) -> list:
        return [self.router]

    @cached_property
    def router(self) -> crd.TraefikCrdRouter:
        return crd.TraefikCrdRouter(metadata=m.meta(self.config, m.router_name(self.config)),
                                    services={c: m.color_name(self.config, c) for c in COLORS},
                                    port=m.SERVICE_PORT, apply_object=self._apply, read_object=self._read,
                                    people=PeopleRouting(self.config.deploy.canary_header, self.config.deploy.sticky))

    def router_running(self) -> bool:
        return self.router.ready()

    def maintenance(self) -> bool:
        return False

    def router_weights(self) -> dict[str, int]:
        return self.router.live_weights() or {}

    def set_weights(self, weights: dict[str, int], *, confirm_timeout: float = 10.0) -> float:
        """Replace the TraefikService (with the resourceVersion read, so a concurrent change is a
        conflict, not a lost update) and confirm by reading it back from the API server."""
        weights = {c: int(weights.get(c, 0)) for c in COLORS}
        if not any(weights.values()):
            raise OperationFailed("set_weights: at least one color needs a weight above 0")
        for color, weight in weights.items():
            if weight > 0:
                self._apply(m.service(self.config, color))
        self.router.apply({}, weights, False)
        return self.router.confirm(weights, confirm_timeout)

    # ---- colors -------------------------------------------------------------------------------------
    def _secret_values(self) -> dict[str, str]:
        from ragops.db.connect import api_keys, app_dsn

        values = {"RAG_DATABASE_URL": app_dsn(self.config), "RAG_API_KEYS": ",".join(api_keys(self.config))}
        for name, ref in self.config.service.secrets.items():
            values[name] = self.config.reveal(ref, f"service.secrets.{name}")
        return values

    def _rollout_timeout(self) -> float:
        return self.config.env.kubernetes.rollout_timeout or self.config.deploy.health_timeout

    def wait_rollout(self, name: str, timeout: float, progress: Progress = _noop) -> tuple[bool, str]:
        """Until the Deployment's current generation is rolled out with every replica ready."""
        deadline = time.monotonic() + timeout
        shown = None
        while True:
            dep = self._read("Deployment", name)
            if dep is None:
                return False, f"Deployment {name} disappeared"
            spec, status = dep.get("spec") or {}, dep.get("status") or {}
            want = int(spec.get("replicas", 1))
            ready, updated = int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)
            total, available = int(status.get("replicas") or 0), int(status.get("availableReplicas") or 0)
            observed = int(status.get("observedGeneration") or 0) >= int(dep["metadata"].get("generation") or 0)
            summary = f"{ready}/{want} ready"
            # as `kubectl rollout status`: readyReplicas also counts the old version's pods, so
            # done only when no old pod is left and the new ones are available
            if observed and updated >= want and total <= updated and available >= updated:
                return True, summary
            if summary != shown:
                progress(f"  {name}: {summary}")
                shown = summary
            if time.monotonic() > deadline:
                reasons = "; ".join(f"{c.get('reason')}: {c.get('message', '')}".strip(": ")
                                    for c in status.get("conditions") or [] if c.get("status") != "True")
                return False, f"{summary} after {timeout:.0f}s" + (f" ({reasons})" if reasons else "")
            time.sleep(0.2)

    def start_color(self, color: str, version: str, *, deploy_id: str, env: dict[str, str] | None = None,
                    progress: Progress = _noop) -> ColorState:
        """Create/replace the color's Deployments (image <service.image>:<version>) and wait for the
        rollout. A rollout that does not finish in time is scaled back to 0 with the reason in the
        annotation `ragops.detail`: the color then is not running, which the deploy's readiness
        gate reports (the color never had traffic)."""
        config = self.config
        self._apply(m.secret(config, self._secret_values()))
        self._apply(m.service(config, color))
        # explicit counts: the color comes up from 0 (an HPA does not scale a Deployment at 0) at
        # least as large as the live one; from then on its HPAs own the counts
        other = self._read("Deployment", m.color_name(config, other_color(color)))
        replicas = max(config.service.replicas, int(((other or {}).get("spec") or {}).get("replicas") or 0))
        started_at = _now()
        app = m.deployment(config, color, version, replicas=replicas, deploy_id=deploy_id, started_at=started_at, env=env)
        progress(f"rolling out {app['metadata']['name']} ({m.image_ref(config, version)}, {replicas} replicas)")
        self._apply(app)
        names = [app["metadata"]["name"]]
        if config.service.workers:
            worker = m.worker_deployment(config, color, version, deploy_id=deploy_id, started_at=started_at, env=env,
                                         replicas=config.service.workers)
            self._apply(worker)
            names.append(worker["metadata"]["name"])
        deadline = time.monotonic() + self._rollout_timeout()
        for name in names:
            done, summary = self.wait_rollout(name, max(1.0, deadline - time.monotonic()), progress)
            if not done:
                detail = f"rollout of {name} did not finish: {summary}; scaled back to 0"
                progress(detail)
                for each in names:
                    self._patch_deployment(each, {"spec": {"replicas": 0},
                                                  "metadata": {"annotations": {"ragops.detail": detail}}})
                return self.color_state(color, probe=False)
            progress(f"{name} rolled out ({summary})")
        return self.color_state(color, probe=False)

    def stop_color(self, color: str, *, drain_timeout: float, progress: Progress = _noop) -> None:
        """Scale the color (API pods and workers) to 0. Each pod gets its preStop pause, then
        SIGTERM and terminationGracePeriodSeconds (set at start from deploy.drain_timeout) for
        in-flight requests; the kubelet kills it after that."""
        names = [m.color_name(self.config, color), m.worker_name(self.config, color)]
        scaled = [n for n in names if self._patch_deployment(n, {"spec": {"replicas": 0}}) is not None]
        if not scaled:
            return
        progress(f"stopping {color}: scaled to 0 (graceful, up to {drain_timeout:.0f}s)")
        deadline = time.monotonic() + drain_timeout + m.PRESTOP_SECONDS + 5
        for name in scaled:
            while time.monotonic() < deadline:
                dep = self._read("Deployment", name)
                if dep is None or not int((dep.get("status") or {}).get("replicas") or 0):
                    break
                time.sleep(0.2)
            else:
                progress(f"{name}: pods still terminating; the kubelet ends them after their grace period")

    def color_state(self, color: str, probe: bool = True) -> ColorState:
        dep = self._read("Deployment", m.color_name(self.config, color))
        state = ColorState(color=color, running=False, url=self.color_url(color))
        if dep is None:
            state.detail = "no Deployment"
            return state
        meta, spec, status = dep["metadata"], dep.get("spec") or {}, dep.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        state.version = labels.get(m.LABEL_VERSION)
        state.deploy_id = annotations.get(m.ANN_DEPLOY_ID)
        state.started_at = annotations.get(m.ANN_STARTED_AT)
        try:
            state.env = json.loads(annotations.get(m.ANN_ENV) or "{}")
        except ValueError:
            state.env = {}
        want, ready = int(spec.get("replicas", 1)), int(status.get("readyReplicas") or 0)
        state.running = want > 0 and ready > 0
        state.ready = state.running
        if want == 0:
            state.detail = annotations.get("ragops.detail") or "scaled to 0"
        elif ready < want:
            state.detail = f"{ready}/{want} pods ready"
        if state.running and probe and state.url:
            found = probe_color(state.url, self.config.service)
            state.healthy, state.ready = found.healthy, found.ready
            state.version = found.version or state.version
            if found.detail:
                state.detail = found.detail
            if not found.answered:
                state.detail = (f"{ready}/{want} pods ready in the cluster, but {state.url} does not answer "
                                f"({found.detail}); set kubernetes.color_url, preview_host or preview_path")
        return state

    def colors(self) -> list[ColorState]:
        weights = self.router_weights()
        return with_weights([self.color_state(color) for color in COLORS], weights)

    # ---- up / down / logs ---------------------------------------------------------------------------
    def up(self, progress: Progress = _noop) -> list[str]:
        """Idempotent: creates what is missing, updates what differs from ragops.yaml, and routes
        to a color when none has traffic (starting blue with service.version if none runs)."""
        import uuid

        steps: list[str] = [f"migrate {name}" for name in self._migrate(progress)]
        for obj in [m.secret(self.config, self._secret_values()), *m.infrastructure(self.config)]:
            outcome = self._apply(obj)
            if outcome != "unchanged":
                progress(f"{outcome} {obj['kind']} {obj['metadata']['name']}")
                steps.append(f"{outcome} {obj['kind']} {obj['metadata']['name']}")
        states = self.colors()
        if not [c for c in states if c.running and c.weight > 0]:
            running = [c for c in states if c.running]
            if running:
                color = running[0].color
            else:
                color, version = "blue", self.config.service.version
                state = self.start_color(color, version, deploy_id=f"up-{uuid.uuid4().hex[:8]}", progress=progress)
                if not state.running:
                    raise OperationFailed(f"{color} ({version}) did not start: {state.detail}")
                steps.append(f"start {color} {version}")
            self.set_weights({color: 100})
            steps.append(f"route 100% to {color}")
        return steps

    def _migrate(self, progress: Progress) -> list[str]:
        """The database is outside the cluster: apply pending migrations from here, as docker does
        with database.dsn (a color's /readyz stays 503 on a schema it does not expect)."""
        from ragops.db.bringup import migrate
        from ragops.db.connect import app_dsn
        from ragops.pg.migrate import apply_migrations

        try:
            if self.config.database.dsn:
                migrations = self.config.resolve_path(self.config.service.path) / "migrations"
                return apply_migrations(app_dsn(self.config), migrations, app_user=None, progress=progress)
            return migrate(self.config, progress)
        except (OperationFailed, ConfigError):
            raise
        except Exception as exc:  # noqa: BLE001 - psycopg errors: one line
            raise OperationFailed(f"database: migrations failed: {str(exc).splitlines()[0][:200]}") from None

    def plan_up(self) -> list[str]:
        """From the manifests alone: no cluster is contacted and no secret is resolved."""
        config, env = self.config, self.config.env
        where = f"context {env.context or '(current)'}, namespace {self.ns}"
        lines = [f"apply Secret {m.secret_name(config)} ({', '.join(m.SECRET_KEYS)}, service.secrets) in {where}"]
        lines += [f"apply {obj['kind']} {obj['metadata']['name']}" for obj in m.infrastructure(config)]
        version = config.service.version
        lines.append(f"when no color serves: start blue {m.image_ref(config, version)} (Deployment "
                     f"{m.color_name(config, 'blue')}, {config.service.replicas} replicas"
                     + (f", {config.service.workers} worker(s)" if config.service.workers else "")
                     + f"), route 100% to it through TraefikService {m.router_name(config)}")
        db = config.database
        lines.append(f"database: external, primary {db.primary.name} at {db.primary.host}:{db.primary.port} "
                     "(not started by ragops on kubernetes)")
        return lines

    def plan_colors(self) -> tuple[list[ColorState], str | None]:
        """A plan still prints without a reachable cluster (or kubeconfig): the live color is unknown."""
        try:
            return self.colors(), None
        except (ConfigError, OperationFailed):
            return [], "cluster not reachable"

    def down(self, purge: bool = False, progress: Progress = _noop) -> list[str]:
        """Delete what ragops created in the namespace, by name; the Lease only with purge."""
        config = self.config
        objects = [("IngressRoute", m.router_name(config)), ("Middleware", f"{config.project}-retry"),
                   ("Middleware", m.preview_strip_name(config)), ("TraefikService", m.router_name(config))]
        for color in COLORS:
            objects += [("IngressRoute", f"{config.project}-preview-{color}"),
                        ("HorizontalPodAutoscaler", m.color_name(config, color)),
                        ("PodDisruptionBudget", m.color_name(config, color)),
                        ("HorizontalPodAutoscaler", m.worker_name(config, color)),
                        ("PodDisruptionBudget", m.worker_name(config, color)),
                        ("Deployment", m.worker_name(config, color)), ("Deployment", m.color_name(config, color)),
                        ("Service", m.color_name(config, color))]
        objects += [("NetworkPolicy", f"{config.project}-api"), ("NetworkPolicy", f"{config.project}-worker"),
                    ("Secret", m.secret_name(config))]
        if purge:
            objects.append(("Lease", m.lease_name(config)))
        steps = []
        for kind, name in objects:
            if self._delete(kind, name):
                progress(f"deleted {kind} {name}")
                steps.append(f"delete {kind} {name}")
        if purge:
            from ragops.purge import purge_state_dir

            steps += purge_state_dir(config)   # backups and their key are kept (--purge-backups)
        return steps

    def logs(self) -> dict[str, Path]:
        """A snapshot of each pod's log (the last 2000 lines) under state_dir/logs, by pod name."""
        directory = self.config.state_dir / "logs"
        directory.mkdir(parents=True, exist_ok=True)
        core = self._api("core")
        pods = self._call("list pods", core.list_namespaced_pod, self.ns,
                          label_selector=f"{m.LABEL_APP}={self.config.project}")
        files: dict[str, Path] = {}
        for pod in pods.get("items") or []:
            name = pod["metadata"]["name"]
            text = self._call(f"read the log of pod {name}", core.read_namespaced_pod_log, name, self.ns,
                              tail_lines=2000, missing_ok=True, raw=True)
            if text is None:
                continue
            path = directory / f"{name}.log"
            path.write_text(text)
            files[name] = path
        return files
