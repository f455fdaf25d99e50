"""A first run without a checkout: `ragops init` writes a ragops.yaml that works as is (the service
shipped with ragops when ./service does not exist), and `up` checks the service, its migrations and
the configured scripts before it starts anything (`up --dry-run` too)."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from ragops.cli.main import main
from ragops.resources import scripts_dir, shipped_dir


@pytest.fixture
def empty_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGOPS_CONFIG", raising=False)
    monkeypatch.delenv("RAGOPS_ENV", raising=False)
    monkeypatch.setenv("RAGOPS_NO_CONFIG_CACHE", "1")
    return tmp_path


def test_init_writes_a_commented_config_that_plans_up_with_the_shipped_service(empty_dir, capsys):
    assert main(["-o", "json", "init"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["config"] == str(empty_dir / "ragops.yaml") and written["next"] == "ragops up"
    text = (empty_dir / "ragops.yaml").read_text()
    assert text.startswith("# ragops.yaml, written by `ragops init`") and "path: ./service" not in text.replace("# path", "")
    assert main(["config", "validate"]) == 0
    capsys.readouterr()
    assert main(["-o", "json", "up", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["checked"][0].startswith(f"service {shipped_dir('service')} (")
    assert plan["checked"][1] == f"script {scripts_dir() / 'security-scan.sh'}"
    assert any("127.0.0.1:8080" in line for line in plan["plan"])


def test_init_keeps_an_existing_file_and_refuses_an_unknown_platform(empty_dir, capsys):
    (empty_dir / "ragops.yaml").write_text("project: mine\n")
    assert main(["init"]) == 2
    assert "ragops.yaml exists; kept as it is" in capsys.readouterr().err
    assert (empty_dir / "ragops.yaml").read_text() == "project: mine\n"
    assert main(["init", "--platform", "nomad"]) == 2
    assert main(["init", "--platform", "docker", "--force"]) == 0
    docker = yaml.safe_load((empty_dir / "ragops.yaml").read_text())
    assert docker["environments"]["docker"]["docker"]["base_image"] == "ragops/base:bookworm"
    assert main(["config", "validate"]) == 0


def test_service_path_defaults_to_the_folder_beside_the_config_when_there_is_one(empty_dir, capsys):
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["-o", "json", "config", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["service"]["path"] == str(shipped_dir("service"))
    (empty_dir / "service").mkdir()
    assert main(["-o", "json", "config", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["service"]["path"] == "./service"


def _local_config(directory, **service) -> None:
    (directory / "ragops.yaml").write_text(yaml.safe_dump({
        "project": "t", "default_env": "t",
        "environments": {"t": {"platform": "local", "state_dir": str(directory / "state"), "service": service,
                               "runbooks": {"security_scan": "sh scripts/scan.sh --strict"}}}}))


@pytest.mark.parametrize("dry_run", [True, False])
def test_up_refuses_missing_migrations_and_scripts_before_starting_anything(empty_dir, capsys, dry_run):
    service = empty_dir / "svc"
    shutil.copytree(shipped_dir("service") / "ragservice", service / "ragservice")
    _local_config(empty_dir, path="./svc")
    up = ["up", "--dry-run"] if dry_run else ["up"]
    assert main(up) == 2
    err = capsys.readouterr().err
    assert f"error: environments.t.service.path: {service / 'migrations'} holds no migrations" in err
    assert not (empty_dir / "state").exists(), "nothing was started"
    shutil.copytree(shipped_dir("service") / "migrations", service / "migrations")
    assert main(up) == 2
    err = capsys.readouterr().err
    assert f"error: environments.t.runbooks.security_scan: script {empty_dir / 'scripts' / 'scan.sh'} does not exist" in err
    assert "Traceback" not in err and not (empty_dir / "state").exists()
