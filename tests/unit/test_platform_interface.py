"""The Platform seam: every registered platform implements the whole interface, capabilities
replace name checks, and nothing outside ragops/platforms/ compares the platform's name or
probes a platform with hasattr."""
from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ragops.config import load_config
from ragops.errors import ConfigError, OperationFailed, UsageError
from ragops.platforms import PLATFORMS, get_platform, platform_class
from ragops.platforms.base import Platform

REPO = Path(__file__).resolve().parents[2]

# what each platform can do; a new platform adds its row here
CAPABILITIES = {
    "local": {"generates_local_secrets": True, "owns_database_files": True,
              "runs_migrations_in_preflight": True, "supports_regions": True},
    "docker": {"generates_local_secrets": True, "owns_database_files": False,
               "runs_migrations_in_preflight": False, "supports_regions": True},
    "kubernetes": {"generates_local_secrets": False, "owns_database_files": False,
                   "runs_migrations_in_preflight": False, "supports_regions": False},
}


def _config(tmp_path: Path, platform: str, **env):
    body = {"platform": platform, "state_dir": "state", **env}
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "demo", "default_env": "e", "environments": {"e": body}}))
    return load_config(path)


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_every_registered_platform_implements_the_whole_interface(tmp_path, name):
    config = _config(tmp_path, name)
    cls = platform_class(config)
    assert issubclass(cls, Platform) and cls.name == name
    assert not cls.__abstractmethods__, f"{cls.__name__} does not implement {sorted(cls.__abstractmethods__)}"
    platform = get_platform(config)          # an ABC with a missing method would refuse this
    assert isinstance(platform, cls) and platform.config is config
    for method, _ in inspect.getmembers(Platform, inspect.isfunction):
        assert callable(getattr(platform, method)), method


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_capabilities(tmp_path, name):
    cls = platform_class(_config(tmp_path, name))
    assert {key: getattr(cls, key) for key in CAPABILITIES[name]} == CAPABILITIES[name]


def test_optional_features_have_defaults_instead_of_hasattr_probes(tmp_path):
    platform = get_platform(_config(tmp_path, "kubernetes"))
    assert platform.maintenance() is False
    assert platform.refresh_backends() is None and platform.start_router() is None
    assert platform.log_file("blue") is None
    assert platform.color_urls("blue") == [(None, platform.color_url("blue"))]
    with pytest.raises(OperationFailed, match="the kubernetes platform has no maintenance mode"):
        platform.set_maintenance(True)


def test_secrets_follow_the_capability_not_the_name(tmp_path):
    from ragops.db.connect import api_keys, db_password

    (tmp_path / "local").mkdir()
    local = _config(tmp_path / "local", "local")
    assert db_password(local) == db_password(local)          # generated once, then read back
    assert api_keys(local)
    (tmp_path / "docker").mkdir()
    docker = _config(tmp_path / "docker", "docker")    # docker generates them too (database containers)
    assert db_password(docker) == db_password(docker) and api_keys(docker)
    kubernetes = _config(tmp_path, "kubernetes")
    with pytest.raises(ConfigError, match=r"environments\.e\.database\.password: required for the kubernetes"):
        db_password(kubernetes)


def test_regions_only_where_supported(tmp_path):
    config = _config(tmp_path, "local", regions={
        "primary": {"database_node": "primary"},
        "secondary": {"database_node": "primary", "router": "127.0.0.1:18080"}})
    assert get_platform(config, region="secondary").region == "secondary"
    assert get_platform(config).region is None
    kubernetes = _config(tmp_path, "kubernetes")
    assert get_platform(kubernetes, region="secondary").region is None    # no regions on kubernetes
    docker = _config(tmp_path, "docker", regions={
        "primary": {"database_node": "primary"},
        "secondary": {"database_node": "primary", "router": "127.0.0.1:18080"}})
    assert get_platform(docker, region="secondary").region == "secondary"


def test_replication_slot_names_are_one_function():
    from ragops.db.replication import slot_name

    assert slot_name("db-Replica.2") == "db_replica_2"
    assert slot_name("replica1") == "replica1"
    assert slot_name("R" * 80) == "r" * 63       # PostgreSQL's NAMEDATALEN - 1


# ---- guards ------------------------------------------------------------------------------------

NAME_CHECK = re.compile(r"""platform\s*(==|!=|\bin\b|\bnot in\b)\s*[(\[{"']|["'](local|docker|kubernetes)["']\s*(==|!=)\s*\S*platform""")
HASATTR = re.compile(r"hasattr\(\s*(self\.)?\w*platform")


@pytest.mark.parametrize("name", ["docker", "kubernetes"])
def test_was_live_is_part_of_the_interface(tmp_path, name):
    """`db recover` and the supervisor ask every platform what was live; one that does not restore colors
    itself answers {} instead of failing with an AttributeError after the database was rebuilt."""
    platform = platform_class(_config(tmp_path, name))
    assert platform.was_live(object.__new__(platform)) == {}


def test_no_platform_name_comparison_or_hasattr_probe_outside_platforms():
    """Callers ask capabilities and call base-class methods; only ragops/platforms/ and the config
    validation (config.py) may look at the name."""
    offenders = []
    for path in sorted((REPO / "ragops").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("ragops/platforms/") or rel == "ragops/config.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if NAME_CHECK.search(line) or HASATTR.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "ask a capability or call a Platform method instead:\n" + "\n".join(offenders)


def test_the_guard_catches_what_it_is_for():
    for line in ['if config.env.platform != "local":', "if platform in ('docker', 'kubernetes'):",
                 'if "docker" == config.env.platform:', 'if hasattr(platform, "set_maintenance"):',
                 'x = self.platform.color_urls(c) if hasattr(self.platform, "color_urls") else []']:
        assert NAME_CHECK.search(line) or HASATTR.search(line), line
    assert not NAME_CHECK.search('"platform": platform.name,')


def test_no_import_cycle_in_ragops():
    for args in ([], ["--all"]):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "import_cycles.py"), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ragops_holds_the_readme_layer_table():
    """No package circle, no import up the README's layer table, no private name from another module."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "layers.py"), "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_build_needs_a_platform_that_runs_images(tmp_path):
    from ragops.platforms.docker_build import build

    with pytest.raises(UsageError, match=r"`ragops build` needs a docker environment \(e is local\)"):   # exit 2
        build(_config(tmp_path, "local"))
