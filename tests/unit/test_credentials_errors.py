"""A credentials problem is a configuration error, never a failed gate: the scheduled DR drill of the
CI templates exited 3 ("gate failed") on botocore's NoCredentialsError, so a missing secret looked
like a failed restore."""
from __future__ import annotations

import json

import yaml

from ragops.cli.main import main
from ragops.netutil import free_port

NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
          "AWS_EC2_METADATA_DISABLED": "true", "RAGOPS_NO_CONFIG_CACHE": "1"}


def _s3_env(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "RAGOPS_ENV", "RAGOPS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in NO_AWS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "t", "default_env": "staging", "environments": {"staging": {
        "platform": "local", "state_dir": str(tmp_path / "state"),
        "database": {"primary": {"name": "primary", "port": free_port()}, "replicas": []},   # nothing listens
        "backups": {"storage": "s3://ragdemo-backups/staging",
                    "s3": {"endpoint_url": f"http://127.0.0.1:{free_port()}"}}}}}))
    return path


def test_a_drill_without_aws_credentials_is_a_config_error_not_a_failed_gate(tmp_path, monkeypatch, capsys):
    path = _s3_env(tmp_path, monkeypatch)
    code = main(["-c", str(path), "-o", "json", "drill", "run", "backup-restore", "--report", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code in (1, 2), captured.err
    assert "no AWS credentials" in captured.err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["exit_code"] in (1, 2) and "gate" not in report["verdict"]


def test_backup_list_without_aws_credentials_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    path = _s3_env(tmp_path, monkeypatch)
    assert main(["-c", str(path), "backup", "list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: backups.storage: no AWS credentials for s3://ragdemo-backups/staging"), err
    assert "Traceback" not in "\n".join(err)
