"""The Python half of scripts/k8s-cluster.sh: checks and objects through the kubernetes client.

    python scripts/k8s_cluster_check.py KUBECONFIG control-plane      apiserver, etcd, scheduler, controllers
    python scripts/k8s_cluster_check.py KUBECONFIG node-ready NODE     exit 0 once the node is Ready
    python scripts/k8s_cluster_check.py KUBECONFIG apply FILE...       server-side apply of YAML documents
    python scripts/k8s_cluster_check.py KUBECONFIG traefik IMAGE WEB_PORT API_PORT APISERVER_PORT
    python scripts/k8s_cluster_check.py KUBECONFIG drain               delete every pod, wait for them to go

No kubectl: the cluster is proved through the same client ragops uses.
"""
from __future__ import annotations

import sys
import time

import yaml

FIELD_MANAGER = "ragops-k8s-cluster"


def client(kubeconfig: str):
    from kubernetes import client as k
    from kubernetes import config

    configuration = k.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return k.ApiClient(configuration)


def server_side_apply(api, doc: dict, dry_run: bool = False) -> dict:
    """PATCH application/apply-patch+yaml to the object's own path (found by discovery)."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    extra = {"dry_run": "All"} if dry_run else {}
    return dynamic.server_side_apply(resource, body=doc, field_manager=FIELD_MANAGER, force_conflicts=True,
                                     **extra).to_dict()


def control_plane(api) -> None:
    from kubernetes import client as k

    version = k.VersionApi(api).get_code()
    from kubernetes.dynamic import DynamicClient

    ready = DynamicClient(api).request("get", "/readyz", query_params=[("verbose", "true")],
                                       header_params={"Accept": "text/plain"})
    ready = ready if isinstance(ready, str) else getattr(ready, "data", ready)
    ready = ready.decode() if isinstance(ready, bytes) else str(ready)
    assert "readyz check passed" in ready, ready
    # the scheduler and the controller-manager hold no leases (--leader-elect=false): prove them by
    # work instead: the default ServiceAccount appears (controller-manager), a Namespace round-trips
    core = k.CoreV1Api(api)
    deadline = time.monotonic() + 60
    while True:
        accounts = core.list_namespaced_service_account("default").items
        if any(a.metadata.name == "default" for a in accounts):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the controller-manager did not create the default ServiceAccount within 60s")
        time.sleep(0.5)
    print(f"control plane: Kubernetes {version.git_version}, apiserver ready, controller-manager working")


def node_ready(api, node: str) -> None:
    from kubernetes import client as k

    found = k.CoreV1Api(api).read_node(node)
    ready = [c for c in found.status.conditions or [] if c.type == "Ready"]
    if not ready or ready[0].status != "True":
        raise SystemExit(f"node {node} not Ready: {ready[0].message if ready else 'no condition yet'}")


def apply_files(api, paths: list[str]) -> None:
    for path in paths:
        with open(path) as handle:
            for doc in yaml.safe_load_all(handle):
                if not doc or (doc["kind"] == "ClusterRoleBinding" and "rbac" in path):
                    continue   # Traefik's example binding names the default namespace: ours is below
                server_side_apply(api, doc)


def traefik(api, image: str, web_port: str, api_port: str, apiserver_port: str) -> None:
    """Traefik in namespace traefik: hostNetwork, so it serves on the host's 127.0.0.1 and reaches
    the apiserver there and the pods on the bridge; the kubernetesCRD provider only."""
    labels = {"app.kubernetes.io/name": "traefik"}
    ns = "traefik"
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "traefik", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "traefik-ingress-controller-traefik"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "traefik-ingress-controller"},
         "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": ns}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "traefik", "namespace": ns, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "strategy": {"type": "Recreate"},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "traefik", "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
                      "containers": [{
                          "name": "traefik", "image": image, "imagePullPolicy": "Never",
                          "args": [f"--entryPoints.web.address=127.0.0.1:{web_port}",
                                   f"--entryPoints.traefik.address=127.0.0.1:{api_port}",
                                   "--ping=true", "--api=true", "--api.insecure=true",
                                   "--providers.kubernetesCRD=true",
                                   "--providers.kubernetesCRD.allowCrossNamespace=false",
                                   "--providers.kubernetesCRD.throttleDuration=0s",
                                   "--log.level=INFO"],
                          # hostNetwork: the apiserver is on this host's loopback
                          "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                                  {"name": "KUBERNETES_SERVICE_PORT", "value": apiserver_port}],
                          "readinessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/ping", "port": int(api_port)},
                                             "periodSeconds": 2}}]}}}},
    ]
    for doc in docs:
        server_side_apply(api, doc)


def drain(api) -> None:
    from kubernetes import client as k

    core = k.CoreV1Api(api)
    for ns in core.list_namespace().items:
        core.delete_collection_namespaced_pod(ns.metadata.name, grace_period_seconds=0)
    deadline = time.monotonic() + 30
    while core.list_pod_for_all_namespaces().items and time.monotonic() < deadline:
        time.sleep(0.5)


def main(argv: list[str]) -> None:
    kubeconfig, command, *args = argv
    api = client(kubeconfig)
    if command == "control-plane":
        control_plane(api)
    elif command == "node-ready":
        node_ready(api, args[0])
    elif command == "apply":
        apply_files(api, args)
    elif command == "traefik":
        traefik(api, *args)
    elif command == "drain":
        drain(api)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
