"""Secret-looking runbook inputs and outputs: state.json and audit.jsonl show them as ***, yet
`resume` hands later steps the real values (kept in a 0600 secrets.json that a success deletes),
and nothing the engine emits or prints carries them."""
from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

import pytest

import ragops.secrets
from ragops.output import to_jsonable
from ragops.runbook.engine import Engine
from ragops.secrets import redact_data


def write(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(body)


@pytest.fixture
def books(tmp_path):
    return tmp_path / "runbooks"


@pytest.fixture
def fresh_process(monkeypatch):
    """Forget every registered secret, as a new `ragops runbook resume` process would."""
    def forget() -> None:
        monkeypatch.setattr(ragops.secrets, "_known_secrets", set())
    forget()
    return forget


def engine(tmp_path, books, events=None) -> Engine:
    return Engine(None, runs_dir=tmp_path / "runs", dirs=[books],
                  on_event=lambda kind, data: events.append((kind, data)) if events is not None else None)


def shown(result, events) -> str:
    """Everything a user could see: the result as `--output json` prints it, and every event."""
    return json.dumps(redact_data(to_jsonable(result.to_dict()))) + json.dumps(to_jsonable(events), default=str)


def test_resume_hands_the_real_secret_output_to_the_next_step(tmp_path, books, monkeypatch, fresh_process):
    token = f"tok-{secrets.token_hex(8)}"
    monkeypatch.setenv("RAGOPS_TEST_MINTED", token)        # the step derives it; the runbook never holds it
    marker, received = tmp_path / "fixed", tmp_path / "received"
    write(books, "mint", f"""
name: mint
description: the first step mints a token, the second uses it and fails until a marker exists
steps:
  - id: first
    name: mint
    action: shell
    with: {{command: "echo $RAGOPS_TEST_MINTED"}}
    outputs: {{token: "{{{{ result.stdout }}}}"}}
  - id: second
    name: use
    action: shell
    with: {{command: "test -e {marker} && echo {{{{ steps.first.outputs.token }}}} > {received}"}}
""")
    events: list = []
    result = engine(tmp_path, books, events).run(engine(tmp_path, books).load("mint"), {})
    assert result.exit_code == 1 and result.failed_step == "second"
    run_dir = Path(result.run_dir)
    kept = run_dir / "secrets.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["steps"]["first"]["token"] == token
    assert token not in shown(result, events)

    fresh_process()
    monkeypatch.delenv("RAGOPS_TEST_MINTED")             # resume must not depend on re-running `first`
    marker.write_text("")
    events = []
    again = engine(tmp_path, books, events).resume(result.run_id)
    assert again.exit_code == 0, again.error
    assert received.read_text().strip() == token          # the real value, not ***
    for name in ("state.json", "audit.jsonl"):
        text = (run_dir / name).read_text()
        assert token not in text and "***" in text, name
    state = json.loads((run_dir / "state.json").read_text())
    assert state["steps"]["first"]["outputs"]["token"] == "***"
    assert token not in shown(again, events)
    assert not kept.exists()                               # only resume needed it


def test_resume_hands_a_secret_input_back_and_dry_run_hides_it(tmp_path, books, fresh_process):
    password = f"pw-{secrets.token_hex(8)}"
    marker, received = tmp_path / "fixed", tmp_path / "received"
    write(books, "login", f"""
name: login
description: uses a secret input in a step that fails until a marker exists
inputs:
  db_password: {{type: string, required: true}}
steps:
  - id: use
    name: use
    action: shell
    with: {{command: "test -e {marker} && echo {{{{ inputs.db_password }}}} > {received}"}}
""")
    eng = engine(tmp_path, books)
    planned = eng.plan(eng.load("login"), {"db_password": password})
    assert password not in json.dumps(to_jsonable(planned.to_dict()))
    events: list = []
    result = engine(tmp_path, books, events).run(eng.load("login"), {"db_password": password})
    assert result.exit_code == 1
    fresh_process()
    marker.write_text("")
    again = engine(tmp_path, books, events).resume(result.run_id)
    assert again.exit_code == 0 and received.read_text().strip() == password
    run_dir = Path(result.run_dir)
    assert password not in (run_dir / "state.json").read_text() + (run_dir / "audit.jsonl").read_text()
    assert password not in shown(again, events)
    assert not (run_dir / "secrets.json").exists()


def test_runs_without_secrets_keep_no_secrets_file(tmp_path, books):
    write(books, "plain", """
name: plain
description: d
steps:
  - id: say
    name: say
    action: shell
    with: {command: "echo hello; exit 1"}
""")
    eng = engine(tmp_path, books)
    result = eng.run(eng.load("plain"), {})
    assert result.exit_code == 1
    assert not (Path(result.run_dir) / "secrets.json").exists()


def test_a_planted_symlink_is_replaced_never_followed(tmp_path):
    from ragops.runbook.state import RunStore

    store = RunStore(tmp_path / "runs", "run-1")
    store.dir.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    store.secrets_path.symlink_to(target)
    store.save_secrets({"inputs": {"api_token": "tok-123456"}, "steps": {}})
    assert target.read_text() == "untouched\n"
    assert not store.secrets_path.is_symlink() and stat.S_IMODE(store.secrets_path.stat().st_mode) == 0o600
    assert store.load_secrets()["inputs"] == {"api_token": "tok-123456"}
    store.drop_secrets()
    assert not store.secrets_path.exists()
