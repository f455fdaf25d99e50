"""ragops.yaml: the shipped file is valid; every bad config exits 2 naming the key."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ragops.cli.main import main
from ragops.config import load_config
from ragops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((REPO / "ragops.yaml").read_text())


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "ragops.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def mutate(**changes):
    data = copy.deepcopy(SHIPPED)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return data


DELETE = object()


def test_shipped_config_is_valid_for_every_environment():
    for env in ("local", "staging", "production"):
        config = load_config(REPO / "ragops.yaml", env)
        assert config.env_name == env
    assert load_config(REPO / "ragops.yaml").env.platform == "local"
    assert load_config(REPO / "ragops.yaml", "staging").env.platform == "docker"
    assert load_config(REPO / "ragops.yaml", "production").env.platform == "kubernetes"


def test_defaults_from_the_guide():
    config = load_config(REPO / "ragops.yaml", "local")
    assert config.slo.rto_seconds == 900 and config.slo.rpo_seconds == 300
    assert config.backups.retention.daily_days == 30
    assert config.router.listen == "127.0.0.1:8080"


def test_environment_overrides_merge_with_top_level_defaults():
    config = load_config(REPO / "ragops.yaml", "production")
    assert config.deploy.strategy == "canary"
    assert config.deploy.canary.steps == [5, 25, 50, 100]
    assert config.deploy.analysis.max_p95_latency_ms == 2000      # from the top-level defaults
    assert config.service.replicas == 3


BAD = [
    # (changes, expected fragment of the one-line error)
    ({"environments__production__deploy__canary__steps": [10, 50, 120]},
     "environments.production.deploy.canary.steps[2]: weight 120 is above 100"),
    ({"environments__production__deploy__canary__steps": [50, 10]},
     "environments.production.deploy.canary.steps: steps must increase"),
    ({"environments__local__platform": "nomad"}, "environments.local.platform: Input should be 'local', 'docker' or 'kubernetes'"),
    ({"environments__local__router__listen": "localhost"}, "environments.local.router.listen: expected host:port"),
    ({"environments__local__router__listen": "127.0.0.1:99999"}, "environments.local.router.listen: expected host:port"),
    ({"environments__local__backups__storage": "ftp://x/y"}, "environments.local.backups.storage: unknown scheme 'ftp'"),
    ({"environments__staging__database__password": "hunter2"},
     "environments.staging.database.password: must be a secret reference"),
    ({"environments__local__deploy__stratgy": "canary"}, "environments.local.deploy.stratgy: unknown key 'stratgy'"),
    ({"environments__local__deploy__drain_timeout": "ten seconds"}, "environments.local.deploy.drain_timeout: expected a duration"),
    ({"environments__local__service__port": 0}, "environments.local.service.port"),
    ({"environments__local__service__health_path": "healthz"}, "environments.local.service.health_path: must start with '/'"),
    ({"default_env": "prod"}, "default_env: environment 'prod' is not defined"),
    ({"project": "Bad Name!"}, "project: String should match pattern"),
    ({"project": DELETE}, "project: required key is missing"),
    ({"slo__rto_seconds": -5}, "slo.rto_seconds: Input should be greater than 0"),
    ({"environments__local__deploy__analysis__max_error_rate": 1.5},
     "environments.local.deploy.analysis.max_error_rate: Input should be less than or equal to 1"),
    ({"environments__local__database__replicas": [{"name": "primary", "port": 5999}]},
     "environments.local.database.replicas[0]: node name 'primary' is used twice"),
    ({"environments__local__hosts": ["ssh://x@y"]}, "environments.local.hosts: only docker environments take hosts"),
    ({"environments__staging__hosts": ["ftp://nope"]}, "environments.staging.hosts[0]: expected 'local'"),
    ({"environments__local__regions__secondary__database_node": "replica9"},
     "environments.local.regions.secondary.database_node: unknown node 'replica9'"),
    # ports that collide on the loopback of one local environment: both keys are named
    ({"environments__local__database__replicas": [{"name": "replica1", "port": 5433}]},
     "environments.local: database.replicas[0].port and database.primary.port both use port 5433"),
    ({"environments__local__service__port": 8080},
     "environments.local: router.listen and service.port both use port 8080"),
    ({"environments__local__router__api": "127.0.0.1:8080"},
     "environments.local: router.api and router.listen both use port 8080"),
    ({"environments__local__regions__secondary__service_port": 8101},
     "environments.local: regions.secondary.service_port and service.port+1 (green) both use port 8101"),
    ({"environments__production__dns__ttl": 0}, "environments.production.dns.ttl: Input should be greater than or equal to 1"),
    ({"environments__production__backups__lifecycle": [{"id": "x", "days": 30, "storage_class": "COLD"}]},
     "environments.production.backups.lifecycle[0].storage_class"),
]


@pytest.mark.parametrize("changes,expected", BAD, ids=[e.split(":")[0] for _, e in BAD])
def test_bad_config_names_the_key(tmp_path, changes, expected):
    path = write(tmp_path, mutate(**changes))
    with pytest.raises(ConfigError) as exc:
        load_config(path, "local")
    assert expected in exc.value.message
    assert "\n" not in exc.value.message


def test_error_carries_the_line_number(tmp_path):
    path = write(tmp_path, mutate(environments__production__deploy__canary__steps=[10, 50, 120]))
    with pytest.raises(ConfigError) as exc:
        load_config(path, "production")
    line = int(exc.value.message.split(":")[1])
    assert "120" in path.read_text().splitlines()[line - 1]


def test_invalid_yaml_reports_a_line(tmp_path):
    path = write(tmp_path, "project: x\ndefault_env: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "invalid YAML" in exc.value.message and "ragops.yaml:" in exc.value.message


def test_unknown_environment_lists_the_defined_ones():
    with pytest.raises(ConfigError) as exc:
        load_config(REPO / "ragops.yaml", "prod")
    assert "unknown environment 'prod'" in exc.value.message and "production" in exc.value.message


def test_missing_file():
    with pytest.raises(ConfigError) as exc:
        load_config(Path("/nonexistent/ragops.yaml"))
    assert "no such config file" in exc.value.message


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    path = write(tmp_path, mutate(environments__production__deploy__canary__steps=[10, 50, 120]))
    proc = subprocess.run([sys.executable, "-m", "ragops.cli.main", "-c", str(path), "config", "validate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ragops.yaml:")
    assert "weight 120 is above 100" in lines[0]
    assert "Traceback" not in proc.stderr


def test_config_show_never_prints_secret_values(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STAGING_DB_PASSWORD", "sup3r-s3cret-value")
    code = main(["-c", str(REPO / "ragops.yaml"), "-e", "staging", "--output", "json", "config", "show"])
    out = capsys.readouterr().out
    assert code == 0
    assert "sup3r-s3cret-value" not in out
    assert "***" in out


def test_secret_reference_errors_name_the_key(tmp_path, monkeypatch):
    from ragops.db.connect import db_password

    monkeypatch.delenv("STAGING_DB_PASSWORD", raising=False)
    config = load_config(REPO / "ragops.yaml", "staging")
    with pytest.raises(ConfigError) as exc:
        db_password(config)
    line = next(i for i, text in enumerate((REPO / "ragops.yaml").read_text().splitlines(), 1)
                if "STAGING_DB_PASSWORD" in text)   # the line to edit is named too
    assert exc.value.message == (f"ragops.yaml:{line}: environments.staging.database.password: environment variable "
                                 "STAGING_DB_PASSWORD is not set")


def test_env_and_config_from_environment_variables(monkeypatch):
    monkeypatch.setenv("RAGOPS_CONFIG", str(REPO / "ragops.yaml"))
    monkeypatch.setenv("RAGOPS_ENV", "production")
    from ragops.config import find_config_path

    assert load_config(find_config_path(None)).env_name == "production"


def test_validate_resolves_the_selected_environments_references(tmp_path, monkeypatch, capsys):
    """Shape for every environment; the selected one's references resolve too, naming the key."""
    monkeypatch.delenv("RAG_API_KEYS", raising=False)
    path = write(tmp_path, mutate(service__path=str(REPO / "service")))
    assert main(["-c", str(path), "config", "validate"]) == 0          # local: no references
    assert main(["-c", str(path), "-e", "staging", "config", "validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: ragops\.yaml:\d+: environments\.staging\.service\.api_keys: "
                        r"environment variable RAG_API_KEYS is not set", err), err


def test_unresolvable_secret_fails_the_plan_before_anything_runs(tmp_path, monkeypatch, capsys):
    """A deploy resolves every reference it needs before the first change; --plan fails the same way."""
    monkeypatch.delenv("RAGOPS_TEST_UNSET", raising=False)
    data = mutate(environments__local__service__secrets={"RAG_EXTRA": "${env:RAGOPS_TEST_UNSET}"},
                  environments__local__state_dir=str(tmp_path / "state"), service__path=str(REPO / "service"))
    path = write(tmp_path, data)
    for argv in (["deploy", "--version", "v2", "--plan"], ["deploy", "--version", "v2", "--yes"],
                 ["rollback", "--yes"]):
        assert main(["-c", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert "environments.local.service.secrets.RAG_EXTRA: environment variable RAGOPS_TEST_UNSET is not set" in err
    assert not (tmp_path / "state").exists()      # nothing was written
