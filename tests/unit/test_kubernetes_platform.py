"""KubernetesPlatform against the in-process fake API (tests/k8s_fake.py): no control plane can
run on these machines. The real `kubernetes` client talks HTTP to the fake through a kubeconfig;
the deploy engine reaches the colors through a URL pattern pointed at the fake's pod stub.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ragops.config import load_config
from ragops.deploy.lock import DeployLock
from ragops.errors import ConfigError, ExitCode, GateFailed, LockHeld, OperationFailed
from ragops.platforms import get_platform
from ragops.platforms import k8s_manifests as m
from ragops.platforms.kubernetes import CONFLICT, KubernetesPlatform
from ragops.routing import traefik_crd as crd
from tests.conftest import require_module
from tests.k8s_fake import FakeKubernetes, PodStub

require_module("kubernetes")

NS, PROJECT, KEY = "rag", "ragk8s", "k8s-test-key-1"


def write_config(tmp_path, color_url: str, extra: str = "") -> str:
    path = tmp_path / "ragops.yaml"
    path.write_text(f"""
project: {PROJECT}
default_env: k8s
environments:
  k8s:
    platform: kubernetes
    kubeconfig: kubeconfig
    context: fake
    namespace: {NS}
    state_dir: state
    service:
      image: example/rag
      version: v1
      replicas: 2
      workers: 1
      api_keys: ${{env:K8S_TEST_API_KEYS}}
    database:
      password: ${{env:K8S_TEST_DB_PASSWORD}}
      primary: {{name: primary, host: db.internal, port: 5432}}
      replicas: []
    deploy:
      health_timeout: 5s
      drain_timeout: 1s
      lock_ttl: 30s
      analysis: {{window: 1.5s, interval: 0.5s, min_requests: 3, no_data_retries: 1, probe_rps: 10}}
    kubernetes:
      color_url: "{color_url}"
      rollout_timeout: 3s
{extra}""")
    return str(path)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A fresh fake API + pod stub, a kubeconfig pointing at it, and a loaded config."""
    monkeypatch.setenv("K8S_TEST_API_KEYS", KEY)
    monkeypatch.setenv("K8S_TEST_DB_PASSWORD", "db-secret-pw")
    # no database behind the fake: `up`'s migrations run on the real cluster's tests
    from ragops.platforms.kubernetes import KubernetesPlatform

    monkeypatch.setattr(KubernetesPlatform, "_migrate", lambda self, progress: [])
    fake = FakeKubernetes(ready_delay=0.3).start()
    fake.write_kubeconfig(tmp_path / "kubeconfig", context="fake", namespace=NS)
    stub = PodStub(fake, NS, PROJECT, KEY)
    path = write_config(tmp_path, stub.url_pattern)

    class Cluster:
        pass

    c = Cluster()
    c.fake, c.stub, c.path, c.tmp = fake, stub, path, tmp_path
    c.config = load_config(tmp_path / "ragops.yaml")
    c.platform = get_platform(c.config)
    yield c
    stub.stop()
    fake.stop()


def deployment(c, color: str, worker: bool = False) -> dict | None:
    name = f"{PROJECT}-{color}" + ("-worker" if worker else "")
    return c.fake.deployment(NS, name)


def test_get_platform_gives_the_kubernetes_platform(cluster):
    assert isinstance(cluster.platform, KubernetesPlatform)
    assert cluster.platform.color_url("green") == cluster.stub.url_pattern.format(color="green")


def test_start_color_waits_for_the_rollout(cluster):
    cluster.fake.ready_delay = 0.8
    messages = []
    started = time.monotonic()
    state = cluster.platform.start_color("blue", "v1", deploy_id="d-1", env={"RAG_LOG_LEVEL": "debug"},
                                         progress=messages.append)
    took = time.monotonic() - started
    assert took >= 0.8, "returned before the fake reported the pods ready"
    assert state.running and state.version == "v1" and state.deploy_id == "d-1"
    assert state.env == {"RAG_LOG_LEVEL": "debug"}
    dep = deployment(cluster, "blue")
    assert dep["status"]["readyReplicas"] == dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "example/rag:v1"
    assert dep["metadata"]["labels"]["ragops.version"] == "v1"
    # from 0 the platform sets both counts itself (an HPA does not scale a Deployment at 0)
    assert deployment(cluster, "blue", worker=True)["spec"]["replicas"] == 1
    assert deployment(cluster, "blue", worker=True)["status"]["readyReplicas"] == 1
    assert any("0/2 ready" in line for line in messages) and any("rolled out (2/2 ready)" in line for line in messages)
    # the Secret carries the secrets; the Deployment only references it
    secret = cluster.fake.get("v1", NS, "secrets", f"{PROJECT}-service")
    assert secret["stringData"]["RAG_API_KEYS"] == KEY
    assert "db-secret-pw" in secret["stringData"]["RAG_DATABASE_URL"]
    assert "db-secret-pw" not in str(dep)
    # polled the Deployment while it rolled out
    polls = [p for meth, p in cluster.fake.requests if meth == "GET" and p.endswith(f"/deployments/{PROJECT}-blue")]
    assert len(polls) >= 3


def test_a_second_start_replaces_and_rolls_out_again(cluster):
    cluster.platform.start_color("green", "v1", deploy_id="d-1")
    generation = deployment(cluster, "green")["metadata"]["generation"]
    state = cluster.platform.start_color("green", "v2", deploy_id="d-2")
    dep = deployment(cluster, "green")
    assert dep["metadata"]["generation"] > generation
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    assert state.version == "v2" and state.deploy_id == "d-2"


def test_a_rollout_that_never_becomes_ready_is_scaled_back(cluster):
    cluster.fake.never_ready.add("v9")
    started = time.monotonic()
    state = cluster.platform.start_color("green", "v9", deploy_id="d-9")
    assert 2.5 < time.monotonic() - started < 60            # rollout_timeout 3s here (else deploy.health_timeout): it gave up, not hung
    assert not state.running
    assert "did not finish: 0/2 ready" in state.detail and "MinimumReplicasUnavailable" in state.detail
    dep = deployment(cluster, "green")
    assert dep["spec"]["replicas"] == 0 and deployment(cluster, "green", worker=True)["spec"]["replicas"] == 0
    assert "did not finish" in dep["metadata"]["annotations"]["ragops.detail"]   # kept in the cluster


def test_stop_color_scales_to_zero_and_waits_for_the_pods(cluster):
    cluster.platform.start_color("blue", "v1", deploy_id="d-1")
    cluster.platform.stop_color("blue", drain_timeout=2)
    dep = deployment(cluster, "blue")
    assert dep["spec"]["replicas"] == 0 and dep["status"]["replicas"] == 0
    assert deployment(cluster, "blue", worker=True)["spec"]["replicas"] == 0
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= cluster.config.deploy.drain_timeout + m.PRESTOP_SECONDS
    state = cluster.platform.color_state("blue", probe=False)
    assert not state.running and state.version == "v1" and state.detail == "scaled to 0"
    cluster.platform.stop_color("green", drain_timeout=1)    # no such Deployment: nothing to do


def test_set_weights_round_trips_through_the_traefik_service(cluster):
    p = cluster.platform
    assert p.router_weights() == {}
    for weights, listed in [({"blue": 100}, {"blue": 100}), ({"blue": 90, "green": 10}, {"blue": 90, "green": 10}),
                            ({"green": 100, "blue": 0}, {"green": 100})]:
        seconds = p.set_weights(weights)
        assert 0 <= seconds < 5
        assert p.router_weights() == listed
        stored = cluster.fake.get(crd.API_VERSION, NS, "traefikservices", PROJECT)
        assert {s["name"]: s["weight"] for s in stored["spec"]["weighted"]["services"]} == \
            {f"{PROJECT}-{c}": w for c, w in listed.items()}
    # every weighted color has a Service to point at
    assert cluster.fake.get("v1", NS, "services", f"{PROJECT}-blue")
    with pytest.raises(OperationFailed, match="at least one color"):
        p.set_weights({"blue": 0, "green": 0})


def test_a_stale_resource_version_is_a_conflict_not_a_lost_update(cluster):
    p = cluster.platform
    p.set_weights({"blue": 100})
    current = p._read("TraefikService", PROJECT)
    p.set_weights({"blue": 50, "green": 50})                  # someone else changed it meanwhile
    stale = m.weighted_service(cluster.config, {"green": 100})
    stale["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    assert p._replace(stale, conflict_ok=True) is CONFLICT
    assert p.router_weights() == {"blue": 50, "green": 50}


def test_colors_reflect_the_deployments_labels_and_the_weights(cluster):
    p = cluster.platform
    p.start_color("blue", "v1", deploy_id="d-1")
    p.start_color("green", "v2", deploy_id="d-2", env={"RAG_FAULT_LATENCY_MS": "5"})
    p.set_weights({"blue": 75, "green": 25})
    states = {s.color: s for s in p.colors()}
    assert (states["blue"].version, states["blue"].weight, states["blue"].deploy_id) == ("v1", 75, "d-1")
    assert (states["green"].version, states["green"].weight, states["green"].env) == ("v2", 25, {"RAG_FAULT_LATENCY_MS": "5"})
    assert all(s.running and s.ready and s.healthy for s in states.values())   # probed through color_url
    # the cluster is the source of truth: a label changed there shows up in ragops at once
    with cluster.fake.lock:
        key = ("apps/v1", NS, "deployments", f"{PROJECT}-blue")
        cluster.fake.objects[key]["metadata"]["labels"]["ragops.version"] = "v1-hotfix"
    assert p.color_state("blue", probe=False).version == "v1-hotfix"


def test_a_color_the_deployer_cannot_reach_is_not_ready(cluster, tmp_path):
    cluster.platform.start_color("blue", "v1", deploy_id="d-1")
    write_config(tmp_path, "http://127.0.0.1:9/{color}")                # nothing listens on port 9
    platform = get_platform(load_config(tmp_path / "ragops.yaml"))
    state = platform.color_state("blue")
    assert state.running and state.ready is False
    assert "2/2 pods ready in the cluster" in state.detail and "kubernetes.color_url" in state.detail


def test_the_lease_lock_is_atomic_and_gives_exit_4(cluster):
    backend = cluster.platform.lock_backend()
    first = DeployLock(backend, ttl=30, command="ragops deploy", deploy_id="d-1").acquire()
    lease = cluster.fake.get("coordination.k8s.io/v1", NS, "leases", f"{PROJECT}-deploy-lock")
    assert lease["spec"]["leaseDurationSeconds"] == 30 and "pid" in lease["spec"]["holderIdentity"]
    assert backend.read()["token"] == first.token
    with pytest.raises(LockHeld) as held:
        DeployLock(cluster.platform.lock_backend(), ttl=30, command="ragops deploy").acquire()
    assert held.value.exit_code == ExitCode.LOCKED == 4
    assert "held by" in held.value.message
    assert not backend.replace("not-the-token", {"token": "x"})
    assert not backend.delete("not-the-token")
    first.release()
    assert backend.read() is None
    # exactly one of many simultaneous creates wins (the API server's 409 on create)
    results = []
    barrier = threading.Barrier(6)

    def race(i):
        barrier.wait()
        results.append(cluster.platform.lock_backend().create({"token": f"t{i}", "owner": f"racer {i}",
                                                                "expires_at": time.time() + 30, "ttl": 30}))
    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [False] * 5 + [True]


def test_a_stale_lease_is_taken_over_and_a_changed_one_is_not(cluster):
    backend = cluster.platform.lock_backend()
    assert backend.create({"token": "old", "owner": "gone@elsewhere", "host": "elsewhere", "pid": 1,
                           "expires_at": time.time() - 5, "ttl": 30})
    lock = DeployLock(backend, ttl=30, command="ragops deploy").acquire()     # expired: replaced
    assert backend.read()["token"] == lock.token
    lease = cluster.fake.get("coordination.k8s.io/v1", NS, "leases", f"{PROJECT}-deploy-lock")
    lock.release()
    # a delete whose resourceVersion is stale is refused by the API server (409), not applied
    backend.create({"token": "new", "owner": "someone", "expires_at": time.time() + 30, "ttl": 30})
    assert not cluster.platform._delete("Lease", f"{PROJECT}-deploy-lock",
                                        resource_version=lease["metadata"]["resourceVersion"])
    assert backend.read()["token"] == "new"


def test_deploy_while_the_lease_is_held_exits_4(cluster, capsys):
    from ragops.cli.main import main

    lock = DeployLock(cluster.platform.lock_backend(), ttl=30, command="ragops deploy", deploy_id="d-x").acquire()
    try:
        code = main(["-c", cluster.path, "deploy", "--version", "v2", "--yes"])
    finally:
        lock.release()
    assert code == 4
    assert "deploy lock is held by" in capsys.readouterr().err


def test_up_is_idempotent_and_down_removes_what_ragops_created(cluster):
    steps = get_platform(cluster.config).up()
    assert steps[-2:] == ["start blue v1", "route 100% to blue"]
    assert "created IngressRoute ragk8s" in steps and "created NetworkPolicy ragk8s-api" in steps
    assert "created HorizontalPodAutoscaler ragk8s-blue-worker" in steps      # the workers scale too
    assert "created PodDisruptionBudget ragk8s-green-worker" in steps
    assert cluster.platform.router_weights() == {"blue": 100}
    writes = len([r for r in cluster.fake.requests if r[0] != "GET"])
    assert get_platform(cluster.config).up() == []
    assert len([r for r in cluster.fake.requests if r[0] != "GET"]) == writes, "a second `up` changed something"
    lock = DeployLock(cluster.platform.lock_backend(), ttl=30, command="x").acquire()
    lock._stop.set()
    steps = get_platform(cluster.config).down()
    assert "delete Deployment ragk8s-blue" in steps and "delete TraefikService ragk8s" in steps
    left = {key[2] for key in cluster.fake.objects}
    assert left == {"leases"}, "down keeps only the lock (without --purge)"
    cluster.config.state_dir.mkdir(parents=True, exist_ok=True)
    assert get_platform(cluster.config).down(purge=True) == ["delete Lease ragk8s-deploy-lock",
                                                      f"delete {cluster.config.state_dir}"]
    assert cluster.fake.objects == {} and not cluster.config.state_dir.exists()


def test_logs_snapshot_each_pods_log(cluster):
    with cluster.fake.lock:
        cluster.fake.objects[("v1", NS, "pods", "ragk8s-blue-abc12")] = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ragk8s-blue-abc12", "labels": {"app": PROJECT}}}
        cluster.fake.objects[("v1", NS, "pods", "other-app-1")] = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other-app-1", "labels": {"app": "other"}}}
    files = cluster.platform.logs()
    assert list(files) == ["ragk8s-blue-abc12"]
    assert files["ragk8s-blue-abc12"].read_text() == "log line of pod ragk8s-blue-abc12\n"


def test_an_unreachable_api_and_a_bad_kubeconfig_are_one_line_errors(cluster, tmp_path):
    cluster.fake.stop()
    with pytest.raises(OperationFailed, match=r"kubernetes API at http://127\.0\.0\.1:\d+ is not reachable"):
        cluster.platform.router_weights()
    (tmp_path / "kubeconfig").unlink()
    with pytest.raises(ConfigError, match=r"environments\.k8s\.kubeconfig: .*kubeconfig does not exist"):
        get_platform(load_config(tmp_path / "ragops.yaml")).router_weights()


# ---- the deploy engine end to end on the fake cluster --------------------------------------------

def test_blue_green_deploy_rollback_on_a_bad_version_and_a_version_that_never_starts(cluster):
    from ragops.deploy import engine

    get_platform(cluster.config).up()
    events = []
    result = engine.deploy(cluster.config, "v2", progress=events.append)
    assert result.result == "succeeded" and (result.from_color, result.to_color) == ("blue", "green")
    assert any(e.kind == "step" and e.message.startswith("ok smoke green") for e in events)
    assert cluster.platform.router_weights() == {"green": 100}
    states = {s.color: s for s in cluster.platform.colors()}
    assert states["green"].version == "v2" and states["blue"].running    # blue kept warm for rollback
    assert cluster.platform.lock_backend().read() is None                 # lease released

    # a version that passes readiness and smoke, then fails: switched back by itself
    with pytest.raises(GateFailed, match=r"rolled back automatically: error_rate"):
        engine.deploy(cluster.config, "v3", env={"RAG_FAULT_ERROR_RATE": "1", "RAG_FAULT_AFTER_S": "1.5"})
    assert cluster.platform.router_weights() == {"green": 100}
    assert deployment(cluster, "blue")["spec"]["replicas"] == 0           # the bad color was stopped

    # a version whose pods never become ready: traffic never moves
    cluster.fake.never_ready.add("v4")
    with pytest.raises(GateFailed, match=r"v4 never became ready on blue: .*did not finish: 0/2 ready"):
        engine.deploy(cluster.config, "v4")
    assert cluster.platform.router_weights() == {"green": 100}
    history = [r["result"] for r in engine.history(cluster.config)]
    assert history[-3:] == ["succeeded", "rolled_back", "failed"]

    # instant rollback to the warm previous color... blue was stopped by the failed deploys, so
    # rollback starts v1 on blue again and flips to it
    back = engine.rollback(cluster.config, to_version="v1")
    assert back.result == "succeeded" and cluster.platform.router_weights() == {"blue": 100}


def test_canary_steps_move_the_weights_on_the_cluster(cluster, monkeypatch):
    from ragops.deploy import engine

    get_platform(cluster.config).up()
    seen = []
    original = cluster.platform.__class__.set_weights

    def spy(self, weights, **kw):
        seen.append({c: w for c, w in weights.items() if w})
        return original(self, weights, **kw)

    monkeypatch.setattr(KubernetesPlatform, "set_weights", spy)
    result = engine.deploy(cluster.config, "v2", strategy="canary", steps=[20, 100], step_pause=1.0)
    assert result.result == "succeeded"
    assert seen == [{"green": 20, "blue": 80}, {"green": 100}]
    assert cluster.platform.router_weights() == {"green": 100}


# ---- issue 13 item 29: plans come from the environment's platform; render needs no cluster -------

REPO_CONFIG = str(Path(__file__).resolve().parents[2] / "ragops.yaml")


@pytest.fixture
def no_cluster(tmp_path, monkeypatch):
    """The shipped production environment with no kubeconfig anywhere and no cluster."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name in ("RAG_API_KEYS", "PROD_DB_PASSWORD", "PROD_BACKUP_AGE_KEY"):
        monkeypatch.setenv(name, "test-value")
    return ["-c", REPO_CONFIG, "-e", "production"]


def test_up_dry_run_plans_with_the_environments_platform(cluster, no_cluster, capsys):
    from ragops.cli.main import main

    assert main([*no_cluster, "up", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would do (kubernetes)" in out and "namespace rag" in out
    assert "Deployment ragdemo-blue" in out and "IngressRoute ragdemo" in out
    assert "127.0.0.1:8080" not in out and "pg_basebackup" not in out     # not the local platform's plan
    before = len(cluster.fake.requests)
    assert main(["-c", cluster.path, "-o", "json", "up", "--dry-run"]) == 0
    assert len(cluster.fake.requests) == before, "a dry run talked to the cluster"
    assert "apply HorizontalPodAutoscaler ragk8s-blue-worker" in capsys.readouterr().out


def test_every_platform_plans_its_own_up():
    from ragops.platforms import PLATFORMS, platform_class
    from ragops.platforms.base import Platform

    assert "plan_up" in Platform.__abstractmethods__
    for name in PLATFORMS:
        config = load_config(Path(REPO_CONFIG), {"local": "local", "docker": "staging",
                                                 "kubernetes": "production"}[name])
        cls = platform_class(config)
        assert cls.plan_up is not Platform.plan_up
        lines = get_platform(config).plan_up()
        assert lines and all(isinstance(line, str) for line in lines)


def test_deploy_plan_without_a_reachable_cluster_says_the_live_color_is_unknown(cluster, no_cluster, capsys):
    from ragops.cli.main import main

    assert main([*no_cluster, "deploy", "--version", "v2", "--plan"]) == 0    # no kubeconfig at all
    assert "live color unknown (cluster not reachable)" in capsys.readouterr().out
    get_platform(cluster.config).up()
    assert main(["-c", cluster.path, "deploy", "--version", "v2", "--plan"]) == 0
    assert "live color blue v1 healthy" in capsys.readouterr().out           # reachable: read from it
    cluster.fake.stop()
    assert main(["-c", cluster.path, "deploy", "--version", "v2", "--plan"]) == 0
    assert "live color unknown (cluster not reachable)" in capsys.readouterr().out


def test_render_writes_the_manifests_without_a_cluster_or_touching_templates(no_cluster, tmp_path, capsys):
    import yaml

    from ragops.cli.main import main

    shipped = Path(REPO_CONFIG).parent / "templates" / "kubernetes"
    before = {p.name: p.read_text() for p in shipped.iterdir()}
    out = tmp_path / "manifests"
    assert main([*no_cluster, "render", "--out", str(out), "--version", "v2"]) == 0
    assert {p.name: p.read_text() for p in shipped.iterdir()} == before
    config = load_config(Path(REPO_CONFIG), "production")
    assert sorted(p.name for p in out.iterdir()) == sorted(m.render_templates(config))
    blue = [d for d in yaml.safe_load_all((out / "color-blue.yaml").read_text()) if d]
    assert blue[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "ragdemo/rag-service:v2"
    capsys.readouterr()
    assert main([*no_cluster, "render"]) == 0                                 # to stdout: plain YAML
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert len(docs) == sum(len(v) for v in m.render_templates(config).values())
    assert main(["-c", REPO_CONFIG, "-e", "local", "render"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "local platform" in err


def test_an_empty_list_the_api_server_dropped_is_unchanged():
    """The real API server omits an empty `ingress: []` (the worker NetworkPolicy): a second `up`
    must not replace the object every time (found on the real cluster, the fake kept the list)."""
    from ragops.platforms.kubernetes import KubernetesPlatform

    want = {"kind": "NetworkPolicy", "metadata": {"labels": {"app": "x"}},
            "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [], "egress": [{"ports": [{"protocol": "TCP", "port": 5432}]}]}}
    stored = {"kind": "NetworkPolicy", "metadata": {"labels": {"app": "x"}, "resourceVersion": "7"},
              "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress", "Egress"],
                       "egress": [{"ports": [{"protocol": "TCP", "port": 5432}]}]}}
    assert KubernetesPlatform._unchanged(want, stored)
    stored["spec"]["ingress"] = [{"from": [{"podSelector": {}}]}]
    assert not KubernetesPlatform._unchanged(want, stored)


def test_a_rollout_is_not_done_while_old_pods_are_the_ready_ones(monkeypatch, tmp_path):
    """Found on the real cluster: replacing a color that still ran v2 with 2 ready pods, the new
    pods were created (updatedReplicas 2) but not ready, readyReplicas 2 counted the old ones, and
    the smoke test then met v2. Done only when no old pod is left and the new ones are available."""
    from ragops.platforms.kubernetes import KubernetesPlatform

    platform = KubernetesPlatform.__new__(KubernetesPlatform)
    meta = {"generation": 3}
    mid = {"metadata": meta, "spec": {"replicas": 2},
           "status": {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 2,
                      "availableReplicas": 2}}
    done = {"metadata": meta, "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                       "availableReplicas": 2}}
    monkeypatch.setattr(platform, "_read", lambda kind, name: mid, raising=False)
    assert platform.wait_rollout("x", 0.5)[0] is False
    monkeypatch.setattr(platform, "_read", lambda kind, name: done, raising=False)
    assert platform.wait_rollout("x", 0.5)[0] is True
