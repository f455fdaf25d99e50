"""Throwaway local environments on free loopback ports, for tests, benchmarks and drill scripts."""
from __future__ import annotations

from pathlib import Path

import yaml

from ragops.netutil import free_port, port_open
from ragops.resources import shipped_dir


def pair_port() -> int:
    """Two consecutive free ports (blue, green)."""
    for _ in range(50):
        port = free_port()
        if port < 65000 and not port_open("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no pair of free ports")


def write_local_config(directory: Path, *, analysis_window: str = "4s", extra: dict | None = None,
                       service_path: Path | None = None, router_kind: str = "traefik") -> Path:
    """Write <directory>/ragops.yaml for a local environment `test` with its state in <directory>/state."""
    service_port = pair_port()
    taken = {service_port, service_port + 1}

    def port() -> int:   # free now and not already given to another key (free_port draws at random)
        while (chosen := free_port()) in taken:
            pass
        taken.add(chosen)
        return chosen

    env = {
        "platform": "local",
        "state_dir": str(directory / "state"),
        "service": {"path": str(service_path or shipped_dir("service")), "port": service_port, "version": "v1",
                    "rate_limit_per_minute": 100000, "startup_timeout": "60s"},
        "router": {"kind": router_kind, "listen": f"127.0.0.1:{port()}", "api": f"127.0.0.1:{port()}"},
        "database": {"primary": {"name": "primary", "port": port()},
                     "replicas": [{"name": "replica1", "port": port()}]},
        "backups": {"storage": f"file://{directory / 'backups'}"},
        "deploy": {"analysis": {"window": analysis_window, "interval": "1s", "min_requests": 5,
                                "no_data_retries": 1},
                   "canary": {"steps": [20, 50, 100], "step_pause": "3s"},
                   "health_timeout": "30s", "drain_timeout": "10s", "lock_ttl": "30s"},
    }
    if extra:
        from ragops.config import deep_merge

        env = deep_merge(env, extra)
    path = directory / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "ragtest", "default_env": "test", "environments": {"test": env}},
                                   sort_keys=False))
    return path
