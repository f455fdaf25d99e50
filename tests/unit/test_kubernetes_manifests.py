"""The Kubernetes objects ragops renders: validated against the Kubernetes OpenAPI schemas with
kubernetes-validate (a real validator, strict: unknown fields fail), security settings, probes,
the guide's HPA numbers, and the shape of Traefik's CRDs (which kubernetes-validate cannot check).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ragops.config import load_config
from ragops.platforms import k8s_manifests as m
from tests.conftest import require_module

kv = require_module("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates" / "kubernetes"
K8S_VERSIONS = ("1.29", "1.33")
CRD_KINDS = {"TraefikService", "IngressRoute", "Middleware"}


@pytest.fixture(scope="module")
def production():
    return load_config(REPO / "ragops.yaml", "production")


@pytest.fixture(scope="module")
def with_preview(tmp_path_factory):
    """The production environment plus a public host, TLS and preview routes."""
    text = (REPO / "ragops.yaml").read_text().replace(
        "    platform: kubernetes\n    production: true\n",
        "    platform: kubernetes\n    production: true\n    kubernetes:\n      host: api.example.com\n      entry_points: [websecure]\n"
        "      tls_secret: api-example-com-tls\n      preview_host: \"{color}.preview.example.com\"\n", 1)
    path = tmp_path_factory.mktemp("cfg") / "ragops.yaml"
    path.write_text(text)
    return load_config(path, "production")


def everything(config) -> list[dict]:
    objects = [doc for docs in m.render_templates(config).values() for doc in docs]
    objects += m.infrastructure(config)
    objects.append(m.secret(config, {"RAG_API_KEYS": "k", "RAG_DATABASE_URL": "host=x"}))
    objects.append(m.deployment(config, "green", "v7", deploy_id="d-1", started_at="t",
                                env={"RAG_FAULT_LATENCY_MS": "5"}, replicas=4))
    return objects


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict]) -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in of_kind(objects, "Deployment")]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", ["production", "with_preview"])
def test_every_builtin_manifest_passes_kubernetes_validate(request, variant, version):
    objects = everything(request.getfixturevalue(variant))
    builtin = [o for o in objects if o["kind"] not in CRD_KINDS]
    assert {o["kind"] for o in builtin} == {"Deployment", "Service", "HorizontalPodAutoscaler",
                                           "PodDisruptionBudget", "NetworkPolicy", "Secret",
                                           "ServiceAccount", "Role", "RoleBinding"}
    for obj in builtin:
        kv.validate(obj, version, strict=True)   # raises ValidationError naming the field


def test_the_validator_really_rejects_a_bad_deployment(production):
    bad = m.deployment(production, "blue", "v1", deploy_id="d", started_at="t")
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.29", strict=True)
    bad = m.hpa(production, "blue")
    bad["spec"]["minReplicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.29", strict=True)


def test_shipped_templates_are_exactly_what_ragops_renders(production):
    rendered = m.render_templates(production)
    for name, docs in rendered.items():
        path = TEMPLATES / name
        assert path.exists(), f"templates/kubernetes/{name} missing: python -m ragops.platforms.k8s_manifests"
        assert path.read_text() == m.template_text(name, docs, "production"), \
            f"templates/kubernetes/{name} is stale: python -m ragops.platforms.k8s_manifests"
        assert [d for d in yaml.safe_load_all(path.read_text()) if d] == docs


def test_pods_run_locked_down(production):
    for spec in pod_specs(everything(production)):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001          # the image's user
        assert spec["automountServiceAccountToken"] is False
        assert spec["terminationGracePeriodSeconds"] >= production.deploy.drain_timeout + m.PRESTOP_SECONDS
        mounts = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                              "limits": {"cpu": "500m", "memory": "1Gi"}}
            # a read-only root needs a writable /tmp (the image sets TMPDIR=/tmp)
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert "emptyDir" in mounts["tmp"]
            # secrets only through the Secret, never as literal values in the spec
            assert container["envFrom"] == [{"secretRef": {"name": "ragdemo-service"}}]
            names = {e["name"] for e in container["env"]}
            assert not names & {"RAG_API_KEYS", "RAG_DATABASE_URL"}
            assert all("valueFrom" not in e for e in container["env"])


def test_api_pods_have_probes_on_the_configured_paths(production):
    app = m.deployment(production, "blue", "v3", deploy_id="d-9", started_at="t")
    container = app["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # startup probe covers service.startup_timeout before liveness may restart the pod
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= production.service.startup_timeout
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["image"] == "ragdemo/rag-service:v3"
    assert "preStop" in container["lifecycle"]
    # the labels and annotation the platform reads back (the cluster is the source of truth)
    assert app["metadata"]["labels"]["app"] == "ragdemo"
    assert app["metadata"]["labels"]["ragops.color"] == "blue"
    assert app["metadata"]["labels"]["ragops.version"] == "v3"
    assert app["metadata"]["annotations"]["ragops.deploy_id"] == "d-9"
    assert "replicas" not in app["spec"]                                 # the HPA owns the count
    assert m.deployment(production, "blue", "v3", deploy_id="d", started_at="t", replicas=0)["spec"]["replicas"] == 0
    assert app["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RAG_VERSION"] == "v3" and env["RAG_COLOR"] == "blue"
    assert env["RAG_GRACEFUL_TIMEOUT"] == str(int(production.deploy.drain_timeout))
    worker = m.worker_deployment(production, "blue", "v3", deploy_id="d-9", started_at="t")
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "ragservice.worker"]
    assert "replicas" not in worker["spec"]


def test_selectors_match_the_pods_they_select(production):
    objects = everything(production)
    for dep in of_kind(objects, "Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in of_kind(objects, "Deployment")}
    for color in ("blue", "green"):
        api_pods = pods[f"ragdemo-{color}"]
        worker_pods = pods[f"ragdemo-{color}-worker"]
        svc = m.service(production, color)
        assert svc["spec"]["selector"].items() <= api_pods.items()
        assert not svc["spec"]["selector"].items() <= worker_pods.items()   # workers take no traffic
        assert m.pdb(production, color)["spec"]["selector"]["matchLabels"].items() <= api_pods.items()
        assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_hpa_follows_the_guides_scaling_triggers(production):
    for color in ("blue", "green"):
        hpa = m.hpa(production, color)
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"ragdemo-{color}"}
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 20)
        targets = {x["resource"]["name"]: x["resource"]["target"] for x in spec["metrics"]}
        assert targets == {"cpu": {"type": "Utilization", "averageUtilization": 70},
                           "memory": {"type": "Utilization", "averageUtilization": 80}}
        pdb = m.pdb(production, color)
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
            "app": "ragdemo", "ragops.color": color, "app.kubernetes.io/component": "api"}}}


def test_network_policies_admit_only_the_router_the_deployer_and_prometheus(production):
    api, worker = m.network_policies(production)
    assert api["spec"]["policyTypes"] == ["Ingress", "Egress"] == worker["spec"]["policyTypes"]
    assert api["spec"]["podSelector"]["matchLabels"] == {"app": "ragdemo", "app.kubernetes.io/component": "api"}
    (rule,) = api["spec"]["ingress"]
    sources = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"]}
    assert sources == {"traefik", "ragops", "prometheus"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert worker["spec"]["ingress"] == []                        # nothing may connect to workers
    egress_ports = {(p["protocol"], p["port"]) for r in api["spec"]["egress"] for p in r["ports"]}
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432)}
    assert all("to" not in r for r in api["spec"]["egress"])      # by port: the database is outside


def check_traefik_shapes(objects: list[dict]) -> None:
    """What Traefik's CRDs (traefik.io/v1alpha1) require of the fields ragops writes, and that
    every reference resolves to an object ragops renders too."""
    services = {o["metadata"]["name"]: o for o in of_kind(objects, "Service")}
    traefik_services = {o["metadata"]["name"]: o for o in of_kind(objects, "TraefikService")}
    middlewares = {o["metadata"]["name"] for o in of_kind(objects, "Middleware")}
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            continue
        assert obj["apiVersion"] == "traefik.io/v1alpha1"
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
        assert obj["metadata"]["name"] and obj["metadata"]["namespace"] == "rag"
    for ts in traefik_services.values():
        assert set(ts["spec"]) == {"weighted"}
        members = ts["spec"]["weighted"]["services"]
        assert members, "a weighted service needs at least one member"
        for member in members:
            assert set(member) == {"name", "port", "weight"}
            assert isinstance(member["weight"], int) and 1 <= member["weight"] <= 100
            assert member["port"] in [p["port"] for p in services[member["name"]]["spec"]["ports"]]
        assert sum(x["weight"] for x in members) == 100
    for mw in of_kind(objects, "Middleware"):
        retry = mw["spec"]["retry"]
        assert isinstance(retry["attempts"], int) and retry["attempts"] >= 1
        assert retry["initialInterval"].endswith("ms")
    for route in of_kind(objects, "IngressRoute"):
        spec = route["spec"]
        assert set(spec) <= {"entryPoints", "routes", "tls"}
        assert spec["entryPoints"] and all(isinstance(e, str) for e in spec["entryPoints"])
        for rule in spec["routes"]:
            assert rule["kind"] == "Rule"
            assert rule["match"].startswith(("Host(`", "PathPrefix(`")) and rule["match"].endswith("`)")
            for ref in rule.get("middlewares", []):
                assert ref["name"] in middlewares
            for target in rule["services"]:
                if target.get("kind") == "TraefikService":
                    assert target["name"] in traefik_services and "port" not in target
                else:
                    assert target["name"] in services and target["port"] == m.SERVICE_PORT
        if "tls" in spec:
            assert set(spec["tls"]) == {"secretName"}


def test_traefik_crds_have_the_shape_traefik_expects(production, with_preview):
    check_traefik_shapes(everything(production))
    objects = everything(with_preview)
    check_traefik_shapes(objects)
    routes = {r["metadata"]["name"]: r["spec"] for r in of_kind(objects, "IngressRoute")}
    assert routes["ragdemo"]["routes"][0]["match"] == "Host(`api.example.com`)"
    assert routes["ragdemo"]["tls"] == {"secretName": "api-example-com-tls"}
    assert routes["ragdemo-preview-green"]["routes"][0]["match"] == "Host(`green.preview.example.com`)"
    assert routes["ragdemo-preview-green"]["routes"][0]["services"] == [{"name": "ragdemo-green", "port": 80}]


@pytest.mark.parametrize("weights,members", [
    ({"blue": 100}, [("ragdemo-blue", 100)]),
    ({"blue": 90, "green": 10}, [("ragdemo-blue", 90), ("ragdemo-green", 10)]),
    ({"blue": 0, "green": 100}, [("ragdemo-green", 100)]),     # weight 0 is left out, not listed as 0
])
def test_weighted_service_round_trips_the_weights(production, weights, members):
    ts = m.weighted_service(production, weights)
    assert [(s["name"], s["weight"]) for s in ts["spec"]["weighted"]["services"]] == members
    assert m.weights_of(ts, production) == {"blue": weights.get("blue", 0), "green": weights.get("green", 0)}


def test_importing_the_platform_does_not_import_the_kubernetes_client():
    code = ("import sys, ragops.platforms.kubernetes, ragops.platforms.k8s_manifests; "
            "sys.exit(1 if any(n == 'kubernetes' or n.startswith('kubernetes.') for n in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ---- issue 13 item 30: workers probed and scaled, replicas left to the HPAs, a writable drill job -----

def test_workers_have_heartbeat_probes_a_pdb_and_a_queue_length_hpa(production):
    worker = m.worker_deployment(production, "blue", "v3", deploy_id="d-9", started_at="t")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"] and m.HEARTBEAT_FILE in command[2]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RAG_WORKER_HEARTBEAT"] == m.HEARTBEAT_FILE and m.HEARTBEAT_FILE.startswith("/tmp/")
    objects = everything(production)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for color in ("blue", "green"):
        hpa = by_name[("HorizontalPodAutoscaler", f"ragdemo-{color}-worker")]["spec"]
        assert hpa["scaleTargetRef"]["name"] == f"ragdemo-{color}-worker"
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 50)        # the guide: workers 1..50
        [metric] = hpa["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"]["name"] == "rag_ingest_queue_length"
        assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "100"}
        pdb = by_name[("PodDisruptionBudget", f"ragdemo-{color}-worker")]["spec"]
        pods = by_name[("Deployment", f"ragdemo-{color}-worker")]["spec"]["template"]["metadata"]["labels"]
        assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"].items() <= pods.items()


def test_the_live_colors_replicas_are_left_to_its_hpas(production):
    rendered = m.render_templates(production)
    blue = {d["metadata"]["name"]: d for d in rendered["color-blue.yaml"] if d["kind"] == "Deployment"}
    hpas = {d["spec"]["scaleTargetRef"]["name"] for d in rendered["color-blue.yaml"]
            if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(blue) == hpas == {"ragdemo-blue", "ragdemo-blue-worker"}
    assert all("replicas" not in d["spec"] for d in blue.values())
    green = [d for d in rendered["color-green.yaml"] if d["kind"] == "Deployment"]
    assert [d["spec"]["replicas"] for d in green] == [0, 0]                 # idle: the platform's 0


def test_the_drill_cronjob_has_a_writable_tmp_and_state_dir_outside_the_configmap():
    job = yaml.safe_load((TEMPLATES / "drill-cronjob.yaml").read_text())
    spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    [container] = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mt["mountPath"]: mt for mt in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    # ragops keeps its state beside the config file (.ragops/<env>): that directory must be a
    # writable volume, not the read-only ConfigMap mount
    env = {e["name"]: e["value"] for e in container["env"]}
    state = str(Path(env["RAGOPS_CONFIG"]).parent / ".ragops" / "staging")
    owner = max((p for p in mounts if state == p or state.startswith(p.rstrip("/") + "/")), key=len)
    assert "configMap" not in volumes[mounts[owner]["name"]] and not mounts[owner].get("readOnly")
    config_mounts = [mt for mt in container["volumeMounts"] if "configMap" in volumes[mt["name"]]]
    assert config_mounts and all(mt.get("readOnly") for mt in config_mounts)
    assert not any(state.startswith(mt["mountPath"].rstrip("/") + "/") for mt in config_mounts
                   if "subPath" not in mt)
    kv.validate(job, "1.29", strict=True)


def test_the_worker_touches_its_heartbeat_and_the_probe_reads_it(production, tmp_path):
    """The worker (backing off from an unreachable database) keeps its heartbeat fresh; the
    manifest's own probe command passes on it and fails without it."""
    import os
    import signal
    import time

    beat = tmp_path / "worker-heartbeat"
    probe = m.worker_deployment(production, "blue", "v1", deploy_id="d", started_at="t")
    command = probe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"]
    command = [sys.executable, *command[1:-1], command[-1].replace(m.HEARTBEAT_FILE, str(beat))]
    assert subprocess.run(command).returncode != 0                    # no heartbeat yet: not alive
    env = {**os.environ, "RAG_DATABASE_URL": "postgresql://ragops@127.0.0.1:1/none?connect_timeout=1",
           "RAG_WORKER_HEARTBEAT": str(beat), "RAG_WORKER_POLL_SECONDS": "0.1"}
    worker = subprocess.Popen([sys.executable, "-m", "ragservice.worker"], cwd=REPO / "service", env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not beat.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert beat.exists(), "the worker never touched its heartbeat file"
        assert subprocess.run(command).returncode == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    os.utime(beat, (time.time() - 2 * m.HEARTBEAT_STALE_SECONDS,) * 2)
    assert subprocess.run(command).returncode != 0                    # a stale heartbeat: restart it


def test_preview_path_routes_each_color_by_prefix_and_strips_it():
    """k8s-local reaches a color at <router_url>/_preview/<color> (no DNS name for a preview host):
    one IngressRoute per color by path prefix, the prefix stripped so the color sees /healthz."""
    from ragops.platforms.kubernetes import KubernetesPlatform

    config = load_config(REPO / "ragops.yaml", "k8s-local")
    objects = m.infrastructure(config)
    check_traefik_shapes_loose(objects)
    routes = {r["metadata"]["name"]: r["spec"]["routes"][0] for r in of_kind(objects, "IngressRoute")}
    assert routes["ragdemo-preview-green"]["match"] == "PathPrefix(`/_preview/green`)"
    assert routes["ragdemo-preview-green"]["middlewares"] == [{"name": "ragdemo-preview-strip"}]
    assert routes["ragdemo-preview-green"]["services"] == [{"name": "ragdemo-green", "port": 80}]
    strip = [mw for mw in of_kind(objects, "Middleware") if mw["metadata"]["name"] == "ragdemo-preview-strip"]
    assert strip[0]["spec"] == {"stripPrefix": {"prefixes": ["/_preview/blue", "/_preview/green"]}}
    assert KubernetesPlatform(config).color_url("blue") == "http://127.0.0.1:27080/_preview/blue"


def check_traefik_shapes_loose(objects: list[dict]) -> None:
    middlewares = {mw["metadata"]["name"] for mw in of_kind(objects, "Middleware")}
    for route in of_kind(objects, "IngressRoute"):
        for rule in route["spec"]["routes"]:
            assert all(ref["name"] in middlewares for ref in rule.get("middlewares", []))


def test_preview_path_must_be_a_path_with_the_color(tmp_path):
    from ragops.errors import ConfigError

    text = (REPO / "ragops.yaml").read_text().replace("preview_path: /_preview/{color}",
                                                      "preview_path: http://x/_preview/{color}")
    (tmp_path / "ragops.yaml").write_text(text)
    with pytest.raises(ConfigError, match="preview_path"):
        load_config(tmp_path / "ragops.yaml", "k8s-local")
