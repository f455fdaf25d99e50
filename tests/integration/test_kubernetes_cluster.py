"""The kubernetes platform on a real cluster (scripts/k8s-cluster.sh: Kubernetes built from the
upstream sources, containerd + runc + a CNI bridge, Traefik with its CRDs, all on this machine).

What the fake API server (tests/k8s_fake.py) cannot show: server-side validation and defaulting,
Deployment -> ReplicaSet -> Pod rollouts with real readiness probes, the Traefik CRDs' schemas and
Traefik routing by them, RBAC, the Lease, the HPA controller. The database stays outside the
cluster (the session's PostgreSQL), reached by the pods at 10.244.0.1.

Run: `scripts/k8s-cluster.sh up` (as root), then
`python -m pytest -m k8s_cluster tests/integration/test_kubernetes_cluster.py`.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from ragops.loadgen import LoadRunner
from tests.conftest import REPO
from tests.k8s_cluster import HOST_IP, ROUTER_URL, server_side_apply, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.k8s_cluster]

RUN = uuid.uuid4().hex[:6]
PROJECT = "ragk8s"


@dataclass
class K8sEnv:
    config_path: Path
    namespace: str
    api_key: str

    def cli(self, *args: str, timeout: float = 400, check: bool = False, env: dict | None = None):
        proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, "CI": "1", **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"ragops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw):
        return json.loads(self.cli("--output", "json", *args, check=True, **kw).stdout)

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ragops.cli.main", "-c", str(self.config_path), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**os.environ, "CI": "1"})


@pytest.fixture(scope="module")
def database(pg_cluster, tmp_path_factory):
    """A database of its own on the session's PostgreSQL; the pods reach it at 10.244.0.1."""
    import psycopg

    password = "rag-" + secrets.token_hex(8)
    name, role = f"ragk8s_{RUN}", f"ragk8s_{RUN}"
    with psycopg.connect(pg_cluster["dsn"], autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    port = pg_cluster["primary"].port
    directory = tmp_path_factory.mktemp("k8s-secrets")
    (directory / "dsn").write_text(f"host={HOST_IP} port={port} dbname={name} user={role} password={password} "
                                   f"connect_timeout=3 application_name=ragservice\n")
    (directory / "api-keys").write_text("key-" + secrets.token_hex(8) + "\n")
    return {"directory": directory, "port": port, "api_key": (directory / "api-keys").read_text().strip()}


def write_env(directory: Path, database: dict, namespace: str, extra: dict | None = None) -> Path:
    body = {
        "platform": "kubernetes",
        "state_dir": str(directory / "state"),
        "kubeconfig": str(Path(os.environ.get("RAGOPS_K8S_DIR", "/var/lib/ragops-k8s")) / "kubeconfig"),
        "namespace": namespace,
        "service": {"path": str(REPO / "service"), "image": "ragops/rag-service", "version": "v1", "workers": 0,
                    "replicas": 1,
                    "rate_limit_per_minute": 100000, "startup_timeout": "60s",
                    "api_keys": f"${{file:{database['directory'] / 'api-keys'}}}"},
        "kubernetes": {"router_url": ROUTER_URL, "preview_path": "/_preview/{color}", "rollout_timeout": "60s"},
        "database": {"dsn": f"${{file:{database['directory'] / 'dsn'}}}",
                     "primary": {"name": "primary", "host": HOST_IP, "port": database["port"]}, "replicas": []},
        "backups": {"storage": f"file://{directory / 'backups'}"},
        "deploy": {"analysis": {"window": "4s", "interval": "1s", "min_requests": 5, "no_data_retries": 1},
                   "canary": {"steps": [20, 100], "step_pause": "4s"},
                   "health_timeout": "60s", "drain_timeout": "5s", "lock_ttl": "30s"},
    }
    if extra:
        from ragops.config import deep_merge

        body = deep_merge(body, extra)
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": PROJECT, "default_env": "k8s", "environments": {"k8s": body}},
                                   sort_keys=False))
    return path


@pytest.fixture(scope="module")
def env(cluster, database, tmp_path_factory):
    from kubernetes import client

    cluster.tag_service_image("v1", "v2", "v3-bad", "v4-canary", "v5-slow", "v6")
    namespace = f"ragk8s-{RUN}"
    core = client.CoreV1Api(cluster.api())
    core.create_namespace({"metadata": {"name": namespace}})
    directory = tmp_path_factory.mktemp("k8s-env")
    config_path = write_env(directory, database, namespace)
    # ragops runs with the shipped least-privilege Role only: an admin applies rbac.yaml once,
    # ragops gets the ServiceAccount's token (every test below is then also an RBAC test)
    kubeconfig = restricted_kubeconfig(cluster, config_path, directory)
    config_path = write_env(directory, database, namespace, {"kubeconfig": str(kubeconfig)})
    k8s = K8sEnv(config_path, namespace, database["api_key"])
    k8s.cli("up", check=True)
    yield k8s
    k8s.cli("down", "--purge", "--yes")
    core.delete_namespace(namespace)


def restricted_kubeconfig(cluster, config_path: Path, directory: Path) -> Path:
    from kubernetes import client

    from ragops.config import load_config
    from ragops.platforms import k8s_manifests as m

    config = load_config(config_path, "k8s")
    api = cluster.api()
    for doc in m.rbac(config):
        server_side_apply(api, doc, dry_run=False)
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        m.RBAC_NAME, config.env.namespace, {"spec": {"expirationSeconds": 7200}}).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "ragops", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "ragops"
    path = directory / "ragops.kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    path.chmod(0o600)
    return path


# ---- helpers -------------------------------------------------------------------------------------------

def via_router(path: str = "/version") -> httpx.Response:
    return httpx.get(ROUTER_URL + path, timeout=5)


def served_version() -> str:
    return via_router().json()["version"]


def traefik_weights(cluster, env: K8sEnv) -> dict[str, int]:
    from kubernetes import client

    found = client.CustomObjectsApi(cluster.api()).get_namespaced_custom_object(
        "traefik.io", "v1alpha1", env.namespace, "traefikservices", PROJECT)
    return {s["name"].rsplit("-", 1)[1]: s["weight"] for s in found["spec"]["weighted"]["services"]}


def deployment(cluster, env: K8sEnv, color: str) -> dict:
    from kubernetes import client

    return client.AppsV1Api(cluster.api()).read_namespaced_deployment(f"{PROJECT}-{color}", env.namespace).to_dict()


def colors(env: K8sEnv) -> dict[str, dict]:
    return {c["color"]: c for c in env.json("status")["colors"]}


def wait_served(version: str, timeout: float = 30) -> None:
    """Traefik's CRD provider applies what the API server holds a moment later."""
    def check():
        try:
            return served_version() == version
        except (httpx.HTTPError, ValueError):
            return False
    wait_until(check, timeout, f"Traefik serves {version}")


# ---- the tests, in order (one environment per module) -----------------------------------------------------

def test_up_serves_blue_through_the_in_cluster_traefik(cluster, env):
    status = env.json("status")
    assert status["platform"] == "kubernetes"
    assert status["router"]["weights"] == {"blue": 100}
    wait_served("v1")
    assert traefik_weights(cluster, env) == {"blue": 100}
    blue = colors(env)["blue"]
    assert blue["running"] and blue["ready"] and blue["version"] == "v1"
    # ragops reaches one color through its preview route
    assert httpx.get(f"{ROUTER_URL}/_preview/blue/version", timeout=5).json()["version"] == "v1"
    assert env.json("up")["steps"] == []      # idempotent against the real API server's defaults


def test_blue_green_under_load_has_no_failed_request(cluster, env):
    with LoadRunner(ROUTER_URL + "/version", rps=50, seconds=240, max_in_flight=32) as stats:
        time.sleep(1)
        proc = env.cli("deploy", "--version", "v2", "--yes")
        time.sleep(2)
    assert proc.returncode == 0, proc.stderr
    print(f"blue-green under load: {stats.requests} requests, {stats.failed} failed, versions {stats.versions}")
    assert stats.requests > 100
    assert stats.failed == 0, (stats.statuses, stats.errors)
    assert {"v1", "v2"} <= stats.versions_seen
    assert traefik_weights(cluster, env) == {"green": 100}
    assert deployment(cluster, env, "green")["metadata"]["labels"]["ragops.version"] == "v2"
    wait_served("v2")


def test_bad_version_that_never_becomes_ready_is_refused(cluster, env):
    with LoadRunner(ROUTER_URL + "/version", rps=20, seconds=240, max_in_flight=16) as stats:
        proc = env.cli("deploy", "--version", "v3-bad", "--set", "RAG_FAULT_READINESS_FAIL=1", "--yes")
    print(f"never-ready version: {stats.requests} requests, {stats.failed} failed, versions {stats.versions}")
    assert proc.returncode == 3, proc.stderr
    assert "v3-bad" not in stats.versions_seen and stats.failed == 0
    assert traefik_weights(cluster, env) == {"green": 100}
    assert served_version() == "v2"
    blue = deployment(cluster, env, "blue")
    assert blue["spec"]["replicas"] == 0      # scaled back, never routed
    assert colors(env)["green"]["running"] and colors(env)["green"]["version"] == "v2"


def test_canary_aborted_by_analysis(cluster, env):
    with LoadRunner(ROUTER_URL + "/version", rps=40, seconds=240, max_in_flight=32) as stats:
        proc = env.cli("deploy", "--version", "v4-canary", "--strategy", "canary", "--steps", "20,100",
                       "--step-pause", "5s", "--set", "RAG_FAULT_ERROR_RATE=0.5", "--set", "RAG_FAULT_AFTER_S=3",
                       "--yes")
    print(f"canary: {stats.requests} requests, versions {stats.versions}, statuses {stats.statuses}")
    assert proc.returncode == 3, proc.stderr
    assert "aborted at 20%" in proc.stderr
    assert traefik_weights(cluster, env) == {"green": 100}
    wait_served("v2")
    assert stats.versions.get("v4-canary", 0) <= stats.requests * 0.2 + 20


def test_rollback_flips_the_traefikservice_weights(cluster, env):
    env.cli("deploy", "--version", "v5-slow", "--yes", check=True)
    assert traefik_weights(cluster, env) == {"blue": 100}
    wait_served("v5-slow")
    proc = env.cli("rollback", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert traefik_weights(cluster, env) == {"green": 100}
    wait_served("v2")


def test_two_deploys_at_once_one_gets_exit_4_through_the_lease(cluster, env):
    from kubernetes import client

    first = env.spawn("deploy", "--version", "v6", "--yes")
    try:
        coordination = client.CoordinationV1Api(cluster.api())
        journal = env.config_path.parent / "state" / "deploy" / "current.json"

        def rolling_out():   # the first deploy holds the Lease from preflight to the end
            try:
                phase = json.loads(journal.read_text() or "{}").get("phase")
            except (OSError, ValueError):
                return False
            return phase in ("start", "ready", "smoke") and coordination.read_namespaced_lease(
                f"{PROJECT}-deploy-lock", env.namespace) is not None
        wait_until(rolling_out, 90, "the first deploy is rolling out", interval=0.05)
        # a second operator elsewhere (a state dir of its own, no shared journal): only the Lease stops it
        other = yaml.safe_load(env.config_path.read_text())
        other["environments"]["k8s"]["state_dir"] = str(env.config_path.parent / "state-other")
        other_path = env.config_path.parent / "ragops-other.yaml"
        other_path.write_text(yaml.safe_dump(other, sort_keys=False))
        second = K8sEnv(other_path, env.namespace, env.api_key).cli("deploy", "--version", "v6", "--yes",
                                                                   timeout=120)
        assert second.returncode == 4, second.stderr
        assert "deploy lock is held by" in second.stderr
    finally:
        out, err = first.communicate(timeout=400)
    assert first.returncode == 0, err
    wait_served("v6")


def kill_deploy_in_phase(env: K8sEnv, version: str, phase: str) -> None:
    """Start a deploy in a subprocess and kill -9 it once its journal reaches `phase`."""
    proc = env.spawn("deploy", "--version", version, "--yes")
    journal = env.config_path.parent / "state" / "deploy" / "current.json"

    def reached():
        if proc.poll() is not None:
            raise AssertionError(f"the deploy ended (exit {proc.returncode}) before phase {phase}: "
                                 f"{proc.stderr.read()[-2000:] if proc.stderr else ''}")
        try:
            return json.loads(journal.read_text() or "{}").get("phase") == phase
        except (OSError, ValueError):
            return False
    try:
        wait_until(reached, 150, f"the deploy reached phase {phase}", interval=0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_kill_9_mid_deploy_then_resume_and_abort(cluster, env):
    """SIGKILL after the switch (analysis): traffic stays on ready pods, the next deploy refuses
    (exit 4, pointing at --resume), --resume finishes; then once more, and abort restores the live color."""
    with LoadRunner(ROUTER_URL + "/version", rps=20, seconds=400, max_in_flight=16) as stats:
        # versions no color runs yet (a version the idle color still runs is a different path)
        kill_deploy_in_phase(env, "v1", "analysis")
        refused = env.cli("deploy", "--version", "v6", "--yes", timeout=120)
        assert refused.returncode == 4 and "--resume" in refused.stderr, refused.stderr
        resumed = env.json("deploy", "--resume", "--yes")
        assert resumed["result"] == "succeeded"
        wait_served("v1")
        live = dict(traefik_weights(cluster, env))
        kill_deploy_in_phase(env, "v5-slow", "analysis")
        aborted = env.json("abort", "--yes")
        assert aborted["result"] == "aborted"
        assert traefik_weights(cluster, env) == live
        wait_served("v1")
    print(f"kill -9 / resume / abort: {stats.requests} requests, {stats.failed} failed")
    assert stats.failed == 0, (stats.statuses, stats.errors)
    assert env.json("lock", "status")["held"] is False


def test_hpa_owns_the_live_colors_replicas(cluster, env):
    from kubernetes import client

    live = next(iter(traefik_weights(cluster, env)))
    hpa = client.AutoscalingV2Api(cluster.api()).read_namespaced_horizontal_pod_autoscaler(
        f"{PROJECT}-{live}", env.namespace)
    assert hpa.spec.min_replicas == 2
    # the HPA controller raises the live color to its minimum (1 -> 2); ragops does not fight it
    wait_until(lambda: deployment(cluster, env, live)["spec"]["replicas"] == 2, 60, "the HPA scaled to 2")
    env.json("up")
    env.json("status")
    assert deployment(cluster, env, live)["spec"]["replicas"] == 2


def test_pod_deleted_by_hand_is_replaced_and_status_tells(cluster, env):
    from kubernetes import client

    core = client.CoreV1Api(cluster.api())
    live = next(iter(traefik_weights(cluster, env)))
    selector = f"app={PROJECT},ragops.color={live},app.kubernetes.io/component=api"
    pods = core.list_namespaced_pod(env.namespace, label_selector=selector).items
    assert len(pods) == 2
    with LoadRunner(ROUTER_URL + "/version", rps=20, seconds=120, max_in_flight=16) as stats:
        core.delete_namespaced_pod(pods[0].metadata.name, env.namespace, grace_period_seconds=0)
        seen = wait_until(lambda: colors(env)[live].get("detail") or None, 30, "status shows a pod missing",
                          interval=0.2)
        assert "pods ready" in seen
        wait_until(lambda: colors(env)[live].get("detail") is None, 120, "the replacement is ready")
    assert colors(env)[live]["running"]
    print(f"pod deleted by hand: {stats.requests} requests, {stats.failed} failed")
    names = {p.metadata.name for p in core.list_namespaced_pod(env.namespace, label_selector=selector).items}
    assert pods[0].metadata.name not in names and len(names) == 2


def test_render_is_accepted_by_server_side_apply_dry_run(cluster, tmp_path):
    """Every shipped kubernetes environment's `render` output, as the API server validates it
    (the Traefik CRD schemas included), without persisting anything."""
    from kubernetes import client

    from ragops.config import load_config

    api = cluster.api()
    shipped = yaml.safe_load((REPO / "ragops.yaml").read_text())["environments"]
    kube_envs = [name for name, body in shipped.items() if body.get("platform") == "kubernetes"]
    assert {"production", "k8s-local"} <= set(kube_envs)
    for name in kube_envs:
        namespace = load_config(REPO / "ragops.yaml", name).env.namespace
        try:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        except client.ApiException as exc:
            assert exc.status == 409
        out = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(REPO / "ragops.yaml"), "-e", name,
                               "render", "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        applied = 0
        for path in sorted(out.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    server_side_apply(api, doc, dry_run=True)
                    applied += 1
        assert applied >= 10, name
