"""The real single-node cluster of scripts/k8s-cluster.sh, shared by the Kubernetes test files.

One cluster per test session: `.ci/run` starts it before pytest (the `cluster` fixture then only
checks it); by hand, the fixture starts it when none runs and stops it again at the end.
Tests that need it carry the `k8s_cluster` marker (deselected by default in pyproject.toml).
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "k8s-cluster.sh"
CLUSTER_DIR = Path(os.environ.get("RAGOPS_K8S_DIR", "/var/lib/ragops-k8s"))
ROUTER_URL = "http://127.0.0.1:27080"
HOST_IP = "10.244.0.1"        # the host on the pods' bridge (forwarded to 127.0.0.1)
SERVICE_IMAGE = "docker.io/ragops/rag-service"


@dataclass
class Cluster:
    kubeconfig: Path
    started_here: bool

    def api(self):
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    def ctr(self, *args: str) -> str:
        proc = subprocess.run(["ctr", "--address", str(CLUSTER_DIR / "run" / "containerd.sock"), "-n", "k8s.io",
                               *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def tag_service_image(self, *versions: str, source: str = "latest") -> None:
        """The versions a test deploys: tags of the imported service image (no registry)."""
        have = set(self.ctr("images", "ls", "-q").split())
        for version in versions:
            if f"{SERVICE_IMAGE}:{version}" not in have:
                self.ctr("images", "tag", f"{SERVICE_IMAGE}:{source}", f"{SERVICE_IMAGE}:{version}")


def ready(kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    proc = subprocess.run(["python3", str(REPO / "scripts" / "k8s_cluster_check.py"), str(kubeconfig),
                           "node-ready", "127.0.0.1"], capture_output=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc.returncode == 0


def start_cluster() -> Cluster:
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    if ready(kubeconfig):
        return Cluster(kubeconfig, started_here=False)
    proc = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise AssertionError(f"scripts/k8s-cluster.sh up failed:\n{proc.stderr[-4000:]}")
    return Cluster(kubeconfig, started_here=True)


def stop_cluster(cluster: Cluster) -> None:
    if cluster.started_here:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=300)


def server_side_apply(api, doc: dict, *, dry_run: bool, field_manager: str = "ragops-test") -> dict:
    """What `kubectl apply --server-side [--dry-run=server]` sends."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    extra = {"dry_run": "All"} if dry_run else {}
    return dynamic.server_side_apply(resource, body=doc, field_manager=field_manager, force_conflicts=True,
                                     **extra).to_dict()


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)
