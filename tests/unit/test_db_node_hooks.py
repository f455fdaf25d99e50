"""The platform hooks for database nodes: fencing by stopping the node and rejoining it with the
platform's own means. The default (local, kubernetes, docker with an external database) changes
nothing, so replication keeps its SQL fence, --confirm-down and the local pg_rewind path; docker's
`down` summary counts the containers it removed."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragops.config import load_config
from ragops.db import replication, standby
from ragops.errors import OperationFailed, UsageError
from ragops.platforms import get_platform
from ragops.platforms.docker import DockerPlatform


def _config(tmp_path: Path, platform: str, **database):
    env = {"platform": platform, "state_dir": str(tmp_path / "state"),
           "database": {"primary": {"name": "primary", "port": 9790},
                        "replicas": [{"name": "replica1", "port": 9791}], **database}}
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "demo", "default_env": "e", "environments": {"e": env}}))
    return load_config(path)


def _down(name: str) -> replication.NodeStatus:
    return replication.NodeStatus(name=name, host="127.0.0.1", port=9790, role="unreachable", error="refused")


@pytest.mark.parametrize("platform, database", [("kubernetes", {"password": "${env:PGPW}"}),
                                                ("docker", {"dsn": "${env:DSN}"})])
def test_platforms_that_cannot_stop_or_rebuild_a_node_say_so(tmp_path, platform, database):
    config = _config(tmp_path, platform, **database)
    assert get_platform(config).fence_database_node("primary") is False
    assert get_platform(config).rejoin_database_node("primary", "replica1") is None


def test_without_the_hook_an_unreachable_old_primary_still_needs_confirm_down(tmp_path):
    config = _config(tmp_path, "docker", dsn="${env:DSN}")
    with pytest.raises(OperationFailed, match="unreachable and cannot be fenced from here"):
        replication.fence(config, "primary", status=_down("primary"))
    assert replication.fence(config, "primary", confirm_down=True, status=_down("primary")).method == "down-confirmed"


def test_a_platform_that_stops_the_node_fences_it_without_confirm_down(tmp_path, monkeypatch):
    config = _config(tmp_path, "docker")
    asked: list[str] = []

    def stop(self, node, progress=None):
        asked.append(node)
        return True

    monkeypatch.setattr(DockerPlatform, "fence_database_node", stop)
    result = replication.fence(config, "primary", status=_down("primary"))
    assert (result.method, result.detail, asked) == ("stopped", "stopped by the docker platform", ["primary"])
    replica = replication.NodeStatus(name="replica1", host="127.0.0.1", port=9791, role="replica", reachable=True)
    assert replication.fence(config, "replica1", status=replica).method == "already-fenced"
    assert asked == ["primary"]      # a reachable replica is left running


def test_rejoin_without_a_platform_rebuild_names_the_missing_data_directory(tmp_path):
    config = _config(tmp_path, "kubernetes", password="${env:PGPW}")
    with pytest.raises(UsageError, match="rejoin needs primary's local data directory; the kubernetes platform"):
        standby._rejoin_by_platform(config, "primary", "replica1", 2, 0.0, None)


def test_down_on_docker_counts_removed_containers_not_networks_or_volumes():
    from ragops.cli.stack import _render_down

    steps = ["remove demo-e-blue (local)", "remove demo-e-router (local)", "remove demo-e-db-primary (local)",
             "remove network demo-e (local)", "remove volume demo-e-db-primary-data (local)", "delete /s (local)"]
    text = _render_down({"environment": "e", "steps": steps})
    assert text == "e is down (3 stopped); deleted volume demo-e-db-primary-data (local), /s (local)"
    assert _render_down({"environment": "e", "steps": ["remove network demo-e (local)"]}) == \
        "e is down (nothing was running)"
