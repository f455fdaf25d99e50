"""Issue 13 item 18: the shipped local environment's security scan passes, and without a terminal a
runbook names every missing approval/ack at once (one retry, not one per grant)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ragops.config import load_config
from ragops.errors import NotApproved
from ragops.runbook.engine import Engine

REPO = Path(__file__).resolve().parents[2]


def _write(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(body)


def test_without_a_terminal_every_missing_grant_is_named_at_once(tmp_path):
    books = tmp_path / "books"
    _write(books, "gated", """
name: gated
description: d
steps:
  - id: slow-check
    name: slow check
    action: shell
    with: {command: "true"}
  - id: go
    name: go
    action: approval
    with: {message: "Proceed?"}
  - id: checked
    name: checked
    action: manual
    with: {item: "the pager works"}
  - id: maybe
    name: maybe
    action: manual
    when: "false"
    with: {item: "only sometimes"}
""")
    engine = Engine(None, runs_dir=tmp_path / "runs", dirs=[books])
    with pytest.raises(NotApproved) as refused:     # before the first step: slow-check never ran
        engine.run(engine.load("gated"), {})
    assert "--approve go --ack checked" in refused.value.message and "maybe" not in refused.value.message
    assert "nothing was run" in refused.value.message and not list((tmp_path / "runs").glob("*"))
    engine = Engine(None, runs_dir=tmp_path / "runs", dirs=[books], approvals={"go"}, acks={"checked"})
    assert engine.run(engine.load("gated"), {}).exit_code == 0


def test_shipped_local_environment_has_a_passing_security_scan(tmp_path):
    config = load_config(REPO / "ragops.yaml", "local")
    assert config.env.runbooks.security_scan, "pre-deploy's strict security gate needs a scan on local"
    books = tmp_path / "books"
    _write(books, "scan", """
name: scan
description: the pre-deploy gate's scan step alone
steps:
  - id: security-scan
    name: Security scan
    action: security.scan
""")
    engine = Engine(config, runs_dir=tmp_path / "runs", dirs=[books])
    result = engine.run(engine.load("scan"), {})
    assert result.exit_code == 0, result.error
    assert result.steps[0]["outputs"]["configured"] is True
