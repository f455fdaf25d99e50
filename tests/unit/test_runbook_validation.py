"""Validation reports FILE:LINE; a step whose operation does not exist fails validation with a
clear message; every shipped runbook validates and uses only known actions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragops.runbook import actions
from ragops.runbook.actions import ACTIONS, Action, check_runbook, missing_operation
from ragops.runbook.schema import RunbookInvalid, list_runbooks, load_runbook, parse_runbook

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "runbooks"


def issues_of(tmp_path, text: str) -> list[str]:
    path = tmp_path / "rb.yaml"
    path.write_text(text)
    runbook, issues = parse_runbook(path)
    if runbook is not None:
        issues += check_runbook(runbook, dirs=[tmp_path])
    return [i.format() for i in issues]


def test_errors_carry_file_and_line(tmp_path):
    found = issues_of(tmp_path, """\
name: rb
description: d
inputs:
  n: {type: integer, default: 1}
steps:
  - id: one
    name: one
    action: shell
    with: {command: "echo {{ inputs.missing }}"}
  - id: two
    name: two
    action: no-such-action
  - id: three
    name: three
    action: shell
    with: {command: x, bogus: 1}
    retry: {attempts: 0}
    on_failure: goto:nowhere
    when: "steps.four.status == 'ok' and"
  - id: one
    name: dup
    action: assert
    with: {that: "1 ==="}
    colour: red
""")
    path = str(tmp_path / "rb.yaml")
    expected = [
        f"{path}:9: unknown input 'missing'",
        f"{path}:12: step 'two': unknown action 'no-such-action'",
        f"{path}:16: step 'three': action 'shell' has no parameter 'bogus'",
        f"{path}:17: step 'three': retry: attempts must be >= 1",
        f"{path}:18: step 'three': on_failure: goto target 'nowhere' is not a step of this runbook",
        f"{path}:19: expected a value, found end of expression",
        f"{path}:20: step 'one': id is used twice",
        f"{path}:24: step 'one': unknown key 'colour'",
        f"{path}:23: step 'one': unexpected",
    ]
    for prefix in expected:
        assert any(line.startswith(prefix) for line in found), (prefix, found)


def test_reference_to_a_later_step_is_an_error(tmp_path):
    found = issues_of(tmp_path, """\
name: rb
description: d
steps:
  - id: a
    name: a
    action: shell
    with: {command: "echo {{ steps.b.outputs.stdout }}"}
  - id: b
    name: b
    action: shell
    with: {command: "true"}
""")
    assert any(":7: step 'b' runs after this one" in line for line in found), found


def test_invalid_yaml_reports_its_line(tmp_path):
    found = issues_of(tmp_path, "name: rb\nsteps:\n  - id: a\n    with: {x: [1, 2}\n")
    assert len(found) == 1 and ":4: invalid YAML" in found[0]


def test_duplicate_keys_are_reported(tmp_path):
    found = issues_of(tmp_path, """\
name: rb
description: d
steps:
  - id: a
    name: a
    action: shell
    action: sleep
    with: {command: "true"}
""")
    assert any(":7: steps[0].action: duplicate key" in line for line in found), found


def test_missing_operation_is_a_clear_validation_error(tmp_path, monkeypatch):
    monkeypatch.setitem(ACTIONS, "db.imaginary", Action(
        name="db.imaginary", summary="", run=lambda ctx, p: {}, needs=("ragops.db.imaginary:promote",)))
    monkeypatch.setitem(ACTIONS, "deploy.imaginary", Action(
        name="deploy.imaginary", summary="", run=lambda ctx, p: {}, needs=("ragops.deploy.engine:no_such_function",)))
    path = tmp_path / "rb.yaml"
    path.write_text("""\
name: rb
description: d
steps:
  - id: promote
    name: promote
    action: db.imaginary
  - id: other
    name: other
    action: deploy.imaginary
""")
    with pytest.raises(RunbookInvalid) as info:
        load_runbook(path, check=check_runbook)
    messages = [i.format() for i in info.value.issues]
    assert messages == [
        f"{path}:6: step 'promote': action 'db.imaginary' needs ragops.db.imaginary.promote, "
        "which this installation does not have",
        f"{path}:9: step 'other': action 'deploy.imaginary' needs ragops.deploy.engine.no_such_function, "
        "which this installation does not have",
    ]
    assert info.value.exit_code == 2


def test_missing_operation_at_run_time_is_a_failure_not_a_no_op(tmp_path, monkeypatch):
    from ragops.runbook.engine import Engine

    monkeypatch.setitem(ACTIONS, "db.imaginary", Action(
        name="db.imaginary", summary="", needs=("ragops.db.imaginary:promote",),
        run=lambda ctx, p: actions.call_operation(ctx, "ragops.db.imaginary:promote", None)))
    (tmp_path / "rb.yaml").write_text("name: rb\ndescription: d\nsteps:\n  - {id: p, name: p, action: db.imaginary}\n")
    engine = Engine(None, runs_dir=tmp_path / "runs", dirs=[tmp_path], check_operations=False)
    result = engine.run(engine.load("rb"), {})
    assert result.exit_code == 1
    assert "does not have ragops.db.imaginary.promote" in result.error


def test_missing_operation_helper():
    assert missing_operation("ragops.runbook.expr:evaluate") is None
    assert missing_operation("ragops.nope:x") == "ragops.nope.x"
    assert missing_operation("ragops.runbook.expr:nope") == "ragops.runbook.expr.nope"


SHIPPED_NAMES = ["pre-deploy", "deploy-day", "post-deploy", "db-corruption", "region-failover",
                 "drill-backup-restore", "drill-deploy-rollback", "drill-failover"]


def test_the_guides_runbooks_are_shipped():
    names = {p.stem for p in list_runbooks([SHIPPED])}
    assert set(SHIPPED_NAMES) <= names


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_runbook_validates_with_the_operations_that_exist(path):
    runbook = load_runbook(path, check=lambda rb: check_runbook(rb, dirs=[SHIPPED]))
    assert runbook.name == path.stem
    for step in runbook.steps:
        assert step.action in ACTIONS
        for need in ACTIONS[step.action].needs:
            assert missing_operation(need) is None, f"{path.name}: {step.id} needs {need}"


def test_pre_deploy_encodes_the_checklist():
    runbook = load_runbook(SHIPPED / "pre-deploy.yaml", check=check_runbook)
    used = {s.action for s in runbook.steps}
    assert {"loadtest", "security.scan", "backup.restore", "db.migrate", "rollback.check", "monitoring.render",
            "backup.check", "manual", "approval"} <= used
    load = runbook.step("load-test")
    assert "inputs.expected_rps * 2" in load.params["rps"]
    assert {"max_p95_ms", "max_error_rate"} <= set(load.params)
    assert runbook.step("scratch-drop").always


def test_drills_declare_what_they_measure():
    for name in ("drill-backup-restore", "drill-deploy-rollback", "drill-failover"):
        runbook = load_runbook(SHIPPED / f"{name}.yaml", check=check_runbook)
        assert "rto" in runbook.drill


def test_cli_validate_exit_codes_and_json(tmp_path, capsys):
    from ragops.cli.main import main

    assert main(["-o", "json", "runbook", "validate", str(SHIPPED / "pre-deploy.yaml")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True and data["runbooks"][0]["name"] == "pre-deploy"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: d\nsteps:\n  - {id: a, name: a, action: nope}\n")
    assert main(["runbook", "validate", str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{bad}:4: step 'a': unknown action 'nope'" in captured.out


def test_cli_list_and_show(capsys):
    from ragops.cli.main import main

    assert main(["-o", "json", "runbook", "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= set(SHIPPED_NAMES) and all(r["valid"] for r in rows)
    assert main(["-o", "json", "runbook", "show", "db-corruption"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in shown["steps"]][:3] == ["verify-backup", "backup-info", "confirm-restore"]
