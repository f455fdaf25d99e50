"""Validation reports FILE:LINE: path: message; a step whose operation does not exist, or that
passes a parameter its operation does not declare, fails validation with a clear message; every
shipped runbook validates and uses only registered operations."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragops.runbook.operations import OPERATIONS, operation
from ragops.runbook.schema import RunbookInvalid, list_runbooks, load_runbook, parse_runbook
from ragops.runbook.validate import check_runbook

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
        f"{path}:9: steps[0].with.command: unknown input 'missing'",
        f"{path}:12: steps[1].action: unknown action 'no-such-action'",
        f"{path}:16: steps[2].with.bogus: action 'shell' has no parameter 'bogus'",
        f"{path}:17: steps[2].retry.attempts: Input should be greater than or equal to 1",
        f"{path}:18: steps[2].on_failure: goto target 'nowhere' is not a step of this runbook",
        f"{path}:19: steps[2].when: expected a value, found end of expression",
        f"{path}:20: steps[3].id: 'one' is used twice (first on line 6)",
        f"{path}:24: steps[3].colour: unknown key 'colour'",
        f"{path}:23: steps[3].with.that: unexpected",
    ]
    for prefix in expected:
        assert any(line.startswith(prefix) for line in found), (prefix, found)
    assert len(found) == len(expected), found


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
    assert any(":7: steps[0].with.command: step 'b' runs after this one" in line for line in found), found


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
    assert any(":7: steps[0].action: duplicate key (first on line 6, again on line 7)" in line
               for line in found), found


def test_duplicate_keys_at_every_level_name_both_lines(tmp_path):
    found = issues_of(tmp_path, """\
name: rb
description: d
inputs:
  n: {type: integer, default: 1}
  n: {type: string}
steps:
  - id: a
    name: a
    action: shell
    with:
      command: "true"
      command: "false"
name: again
""")
    path = str(tmp_path / "rb.yaml")
    assert f"{path}:5: inputs.n: duplicate key (first on line 4, again on line 5)" in found, found
    assert f"{path}:12: steps[0].with.command: duplicate key (first on line 11, again on line 12)" in found, found
    assert f"{path}:13: name: duplicate key (first on line 1, again on line 13)" in found, found


def test_assert_naming_an_undefined_step_fails_validation(tmp_path):
    found = issues_of(tmp_path, """\
name: rb
description: d
steps:
  - id: a
    name: a
    action: shell
    with: {command: "true"}
  - id: check
    name: check
    action: assert
    with:
      that:
        - steps.a.outputs.exit_code == 0
        - steps.ghost.outputs.value == 1
        - "{{ inputs.nope }}"
  - id: later
    name: later
    action: assert
    with: {that: "steps.last.status == 'ok'"}
  - id: last
    name: last
    action: shell
    with: {command: "true"}
""")
    path = str(tmp_path / "rb.yaml")
    assert found == [
        f"{path}:12: steps[1].with.that: unknown input 'nope' (declared: none)",
        f"{path}:14: steps[1].with.that[1]: unknown step 'ghost' in reference 'steps.ghost.outputs.value'",
        f"{path}:19: steps[2].with.that: step 'last' runs after this one; its outputs are not available yet",
    ], found


@pytest.fixture
def scratch_operations():
    """Operations a test registers are gone afterwards."""
    before = dict(OPERATIONS)
    yield
    OPERATIONS.clear()
    OPERATIONS.update(before)


def test_missing_operation_is_a_clear_validation_error(tmp_path):
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
    action: shell
""")
    with pytest.raises(RunbookInvalid) as info:
        load_runbook(path, check=check_runbook)
    messages = [i.format() for i in info.value.issues]
    assert messages[0].startswith(f"{path}:6: steps[0].action: unknown action 'db.imaginary' (known: ")
    assert "backup.create" in messages[0]
    assert messages[1] == f"{path}:9: steps[1].with.command: action 'shell' needs this parameter"
    assert len(messages) == 2
    assert info.value.exit_code == 2


def test_parameters_are_matched_against_the_operation_declaration(tmp_path, scratch_operations):
    from ragops.runbook.engine import Engine

    seen = []

    @operation("db.imaginary")
    def imaginary(ctx, *, node: str, max_lag: int | None = None) -> dict:
        """An operation only this test has."""
        seen.append((ctx.step.id, node, max_lag))
        return {"node": node}

    assert OPERATIONS["db.imaginary"].params == ("node", "max_lag")
    assert OPERATIONS["db.imaginary"].required == ("node",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: d\nsteps:\n  - id: p\n    name: p\n    action: db.imaginary\n"
                   "    with: {node: r1, force: true}\n")
    with pytest.raises(RunbookInvalid) as info:
        load_runbook(bad, check=check_runbook)
    assert [i.format() for i in info.value.issues] == [
        f"{bad}:7: steps[0].with.force: action 'db.imaginary' has no parameter 'force' (parameters: node, max_lag)"]
    (tmp_path / "rb.yaml").write_text("name: rb\ndescription: d\nsteps:\n"
                                      "  - {id: p, name: p, action: db.imaginary, with: {node: r1}}\n")
    engine = Engine(None, runs_dir=tmp_path / "runs", dirs=[tmp_path])
    result = engine.run(engine.load("rb"), {})
    assert result.exit_code == 0 and seen == [("p", "r1", None)]
    assert result.steps[0]["outputs"] == {"node": "r1"}


def test_operations_are_declared_with_keyword_parameters_and_unique_names(scratch_operations):
    with pytest.raises(TypeError, match="keyword-only"):
        @operation("test.positional")
        def positional(ctx, node):
            return {}
    with pytest.raises(ValueError, match="registered twice"):
        @operation("shell")
        def shell_again(ctx):
            return {}


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
        assert step.action in OPERATIONS


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
    assert f"{bad}:4: steps[0].action: unknown action 'nope'" in captured.out


def test_cli_list_and_show(capsys):
    from ragops.cli.main import main

    assert main(["-o", "json", "runbook", "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= set(SHIPPED_NAMES) and all(r["valid"] for r in rows)
    assert main(["-o", "json", "runbook", "show", "db-corruption"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in shown["steps"]][:3] == ["verify-backup", "backup-info", "confirm-restore"]


def test_ragops_yaml_and_runbooks_fail_the_same_way(tmp_path):
    """One loader and one error format: FILE:LINE: path: message, duplicate keys included."""
    from ragops.config import load_config
    from ragops.errors import ConfigError

    config = tmp_path / "ragops.yaml"
    config.write_text("project: p\ndefault_env: local\nenvironments:\n  local:\n    deploy:\n"
                      "      drain_timeout: 5s\n      drain_timeout: 10s\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.message == ("ragops.yaml:7: environments.local.deploy.drain_timeout: "
                                  "duplicate key (first on line 6, again on line 7)")
    config.write_text("project: p\ndefault_env: local\nenvironments:\n  local:\n    deploy:\n"
                      "      drain_timeout: soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.message.startswith("ragops.yaml:6: environments.local.deploy.drain_timeout: ")
    found = issues_of(tmp_path, "name: rb\ndescription: d\nsteps:\n  - id: a\n    name: a\n    action: sleep\n"
                                "    timeout: soon\n    with: {duration: 1s}\n")
    assert len(found) == 1 and found[0].startswith(f"{tmp_path / 'rb.yaml'}:7: steps[0].timeout: "), found
