"""The runbook engine without any platform: retries, timeouts, on_failure, resume, approvals,
audit redaction, dry-run. Actions here are built-ins (shell, assert, sleep, approval, manual,
runbook) so every test runs real code paths."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ragops.errors import NotApproved, UsageError
from ragops.runbook.engine import Engine
from ragops.secrets import register_secret


def write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(body)
    return path


@pytest.fixture
def books(tmp_path):
    return tmp_path / "runbooks"


def engine(tmp_path, books, events=None, **kw) -> Engine:
    def on_event(kind, data):
        if events is not None:
            events.append((kind, data))
    return Engine(None, runs_dir=tmp_path / "runs", dirs=[books], on_event=on_event, **kw)


def run(tmp_path, books, name, inputs=None, events=None, **kw):
    eng = engine(tmp_path, books, events, **kw)
    return eng, eng.run(eng.load(name), inputs or {})


def test_success_outputs_and_templating(tmp_path, books):
    write(books, "ok", """
name: ok
description: d
inputs:
  n: {type: integer, default: 2}
steps:
  - id: echo
    name: echo
    action: shell
    with: {command: "echo value-{{ inputs.n * 3 }}"}
    outputs: {word: "{{ result.stdout }}"}
  - id: check
    name: check
    action: assert
    with: {that: ["steps.echo.outputs.word == 'value-6'", "steps.echo.status == 'ok'"]}
outputs:
  word: "{{ steps.echo.outputs.word }}"
""")
    _, result = run(tmp_path, books, "ok", {"n": "2"})
    assert result.status == "succeeded" and result.exit_code == 0
    assert result.outputs == {"word": "value-6"}
    state = json.loads((Path(result.run_dir) / "state.json").read_text())
    assert state["steps"]["echo"]["outputs"]["word"] == "value-6"
    assert len(state["content_hash"]) == 64


def test_retries_with_exponential_backoff(tmp_path, books):
    counter = tmp_path / "count"
    write(books, "flaky", f"""
name: flaky
description: fails twice, then passes
steps:
  - id: flaky
    name: flaky
    action: shell
    with:
      command: "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    retry: {{attempts: 4, delay: 0.05, backoff: 2}}
""")
    events = []
    _, result = run(tmp_path, books, "flaky", events=events)
    assert result.status == "succeeded"
    retries = [d for k, d in events if k == "step_retry"]
    assert [r["wait"] for r in retries] == [0.05, 0.1]
    assert result.steps[0]["attempts"] == 3


def test_retries_exhausted_fail_the_step(tmp_path, books):
    write(books, "bad", """
name: bad
description: always fails
steps:
  - id: bad
    name: bad
    action: shell
    with: {command: "echo boom >&2; exit 7"}
    retry: {attempts: 2, delay: 0}
""")
    _, result = run(tmp_path, books, "bad")
    assert result.exit_code == 1 and result.status == "failed" and result.failed_step == "bad"
    assert "exited 7" in result.error and "boom" in result.error
    assert result.steps[0]["attempts"] == 2


def test_timeout_kills_a_shell_command(tmp_path, books):
    write(books, "slow", """
name: slow
description: too slow
steps:
  - id: slow
    name: slow
    action: shell
    with: {command: "sleep 30"}
    timeout: 0.5s
""")
    started = time.monotonic()
    _, result = run(tmp_path, books, "slow")
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    assert result.steps[0]["status"] == "timeout"


def test_timeout_stops_a_python_action(tmp_path, books):
    write(books, "sleepy", """
name: sleepy
description: too slow
steps:
  - id: nap
    name: nap
    action: sleep
    with: {duration: 30s}
    timeout: 300ms
  - id: after
    name: after
    action: shell
    with: {command: "true"}
""")
    started = time.monotonic()
    _, result = run(tmp_path, books, "sleepy")
    assert time.monotonic() - started < 5
    assert result.steps[0]["status"] == "timeout"
    assert result.steps[1]["status"] == "skipped"     # abort is the default


def test_gate_failure_exits_3_and_continue_runs_the_rest(tmp_path, books):
    write(books, "gates", """
name: gates
description: a failed check, then more checks
steps:
  - id: check
    name: check
    action: assert
    with: {that: "1 > 2", message: arithmetic}
    on_failure: continue
  - id: next
    name: next
    action: shell
    with: {command: "true"}
""")
    _, result = run(tmp_path, books, "gates")
    assert result.exit_code == 3 and result.status == "gate_failed"
    assert [s["status"] for s in result.steps] == ["failed", "ok"]
    assert "arithmetic: 1 > 2 is false" in result.error


def test_goto_and_always_and_when(tmp_path, books):
    write(books, "flow", """
name: flow
description: goto a recovery step, skip the rest, always clean up
steps:
  - id: work
    name: work
    action: shell
    with: {command: "exit 1"}
    on_failure: goto:recover
  - id: skipped-by-goto
    name: never
    action: shell
    with: {command: "true"}
  - id: recover
    name: recover
    action: shell
    when: "steps.work.status == 'failed'"
    with: {command: "echo recovered"}
  - id: not-needed
    name: not needed
    action: shell
    when: "steps.work.status == 'ok'"
    with: {command: "true"}
  - id: break
    name: break
    action: shell
    with: {command: "exit 2"}
  - id: after-abort
    name: after abort
    action: shell
    with: {command: "true"}
  - id: cleanup
    name: cleanup
    action: shell
    with: {command: "echo cleaned"}
    always: true
""")
    _, result = run(tmp_path, books, "flow")
    statuses = {s["id"]: s["status"] for s in result.steps}
    assert statuses == {"work": "failed", "skipped-by-goto": "not run", "recover": "ok", "not-needed": "skipped",
                        "break": "failed", "after-abort": "skipped", "cleanup": "ok"}
    assert result.failed_step == "break" and result.exit_code == 1


def test_from_step_skips_earlier_steps(tmp_path, books):
    write(books, "from", """
name: from
description: d
steps:
  - id: one
    name: one
    action: shell
    with: {command: "exit 1"}
  - id: two
    name: two
    action: shell
    with: {command: "true"}
""")
    eng = engine(tmp_path, books)
    result = eng.run(eng.load("from"), {}, from_step="two")
    assert [s["status"] for s in result.steps] == ["skipped", "ok"] and result.exit_code == 0
    with pytest.raises(UsageError, match="no step 'three'"):
        eng.run(eng.load("from"), {}, from_step="three")


def test_resume_continues_at_the_failed_step_with_earlier_outputs(tmp_path, books):
    marker = tmp_path / "fixed"
    write(books, "resumable", f"""
name: resumable
description: d
steps:
  - id: first
    name: first
    action: shell
    with: {{command: "echo $$"}}
  - id: second
    name: second
    action: shell
    with: {{command: "test -e {marker}"}}
  - id: third
    name: third
    action: assert
    with: {{that: "steps.first.status == 'ok' and len(steps.first.outputs.stdout) > 0"}}
""")
    eng, result = run(tmp_path, books, "resumable")
    assert result.exit_code == 1 and result.failed_step == "second"
    first_pid = result.steps[0]["outputs"]["stdout"]
    marker.write_text("")
    events = []
    again = engine(tmp_path, books, events).resume(result.run_id)
    assert again.exit_code == 0 and again.run_id == result.run_id
    started = [d["step"] for k, d in events if k == "step_start"]
    assert started == ["second", "third"]                       # first was not re-run
    assert again.steps[0]["outputs"]["stdout"] == first_pid
    audit = [json.loads(line) for line in (Path(result.run_dir) / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in audit].count("resume") == 1
    with pytest.raises(UsageError, match="already succeeded"):
        engine(tmp_path, books).resume(result.run_id)


def test_resume_refuses_a_changed_runbook_unless_forced(tmp_path, books):
    path = write(books, "changing", """
name: changing
description: d
steps:
  - id: fail
    name: fail
    action: shell
    with: {command: "exit 1"}
""")
    _, result = run(tmp_path, books, "changing")
    path.write_text(path.read_text().replace("exit 1", "exit 0"))
    with pytest.raises(UsageError, match="changed since the run started"):
        engine(tmp_path, books).resume(result.run_id)
    forced = engine(tmp_path, books).resume(result.run_id, force=True)
    assert forced.exit_code == 0
    state = json.loads((Path(result.run_dir) / "state.json").read_text())
    assert state["resumes"][-1]["forced"] is True


def test_approvals_fail_closed_without_a_terminal(tmp_path, books):
    write(books, "gated", """
name: gated
description: d
steps:
  - id: go
    name: go
    action: approval
    with: {message: "Proceed?"}
  - id: checked
    name: checked
    action: manual
    with: {item: "the pager works"}
  - id: work
    name: work
    action: shell
    with: {command: "true"}
""")
    with pytest.raises(NotApproved, match="--approve go --ack checked"):   # refused before any step
        run(tmp_path, books, "gated")
    with pytest.raises(NotApproved, match=r"--ack checked$"):
        run(tmp_path, books, "gated", approvals=["go"])
    _, result = run(tmp_path, books, "gated", approvals=["go"], acks=["checked"])
    assert result.exit_code == 0
    audit = [json.loads(line) for line in (Path(result.run_dir) / "audit.jsonl").read_text().splitlines()]
    approvals = [r for r in audit if r["event"] == "approval"]
    assert [a["via"] for a in approvals] == ["--approve go", "--ack checked"]
    assert all("@" in a["answered_by"] for a in approvals)


def test_terminal_answers_are_recorded_and_a_no_is_exit_5(tmp_path, books):
    write(books, "ask", """
name: ask
description: d
steps:
  - id: go
    name: go
    action: approval
""")
    asked = []
    _, result = run(tmp_path, books, "ask", prompt=lambda q, kind, step: asked.append((q, kind)) or False)
    assert asked == [("go", "approve")] and result.exit_code == 5 and "denied by" in result.error
    _, result = run(tmp_path, books, "ask", prompt=lambda q, kind, step: True)
    assert result.exit_code == 0 and result.steps[0]["outputs"]["via"] == "terminal"


def test_audit_log_redacts_secrets(tmp_path, books, monkeypatch):
    secret = "hunter2-very-secret-value"
    register_secret(secret)
    write(books, "secretive", f"""
name: secretive
description: d
steps:
  - id: leak
    name: leak
    action: shell
    with:
      command: "echo token {secret}; echo postgresql://app:pw123456@db/x"
      env: {{API_TOKEN: "{secret}"}}
""")
    _, result = run(tmp_path, books, "secretive")
    assert result.exit_code == 0
    text = (Path(result.run_dir) / "audit.jsonl").read_text() + (Path(result.run_dir) / "state.json").read_text()
    assert secret not in text and "pw123456" not in text
    assert "***" in text
    records = [json.loads(line) for line in (Path(result.run_dir) / "audit.jsonl").read_text().splitlines()]
    step = next(r for r in records if r.get("step") == "leak" and r["event"] == "step")
    assert {"ts", "actor", "host", "step", "params", "outputs", "duration", "result"} <= set(step)
    assert step["params"]["env"]["API_TOKEN"] == "***"


def test_audit_log_is_only_appended(tmp_path, books):
    write(books, "twice", """
name: twice
description: d
steps:
  - id: a
    name: a
    action: shell
    with: {command: "exit 1"}
""")
    _, result = run(tmp_path, books, "twice")
    audit = Path(result.run_dir) / "audit.jsonl"
    before = audit.read_text()
    engine(tmp_path, books).resume(result.run_id)
    assert audit.read_text().startswith(before)


def test_dry_run_renders_parameters_and_runs_nothing(tmp_path, books):
    marker = tmp_path / "touched"
    write(books, "plan", f"""
name: plan
description: d
inputs:
  rps: {{type: number, default: 10}}
steps:
  - id: touch
    name: touch
    action: shell
    with: {{command: "touch {marker} # rps={{{{ inputs.rps * 2 }}}}"}}
  - id: later
    name: later
    action: shell
    with: {{command: "echo {{{{ steps.touch.outputs.stdout }}}}"}}
  - id: go
    name: go
    action: approval
""")
    eng = engine(tmp_path, books)
    result = eng.plan(eng.load("plan"), {"rps": "25"})
    assert not marker.exists() and result.dry_run and result.exit_code == 0
    assert result.steps[0]["params"]["command"].endswith("rps=50")
    assert result.steps[1]["params"]["command"] == "echo <steps.touch.outputs.stdout>"
    assert "fail closed (exit 5)" in result.steps[2]["would"]
    assert not (tmp_path / "runs").exists()


def test_inputs_are_typed_and_unknown_ones_refused(tmp_path, books):
    write(books, "typed", """
name: typed
description: d
inputs:
  n: {type: integer, default: 1}
  mode: {type: string, default: a, choices: [a, b]}
  version: {type: string, required: true}
steps:
  - id: s
    name: s
    action: assert
    with: {that: "inputs.n == 3 and inputs.mode == 'b'"}
""")
    eng = engine(tmp_path, books)
    runbook = eng.load("typed")
    from ragops.errors import ConfigError

    with pytest.raises(UsageError, match="input 'version' is required"):
        eng.run(runbook, {})
    with pytest.raises(UsageError, match="unknown input 'nope'"):
        eng.run(runbook, {"nope": "1", "version": "v"})
    with pytest.raises(ConfigError, match="expected integer"):
        eng.run(runbook, {"n": "x", "version": "v"})
    with pytest.raises(ConfigError, match="not one of"):
        eng.run(runbook, {"mode": "c", "version": "v"})
    assert eng.run(runbook, {"n": "3", "mode": "b", "version": "v"}).exit_code == 0


def test_nested_runbook_outputs_and_failures(tmp_path, books):
    write(books, "child", """
name: child
description: d
inputs:
  x: {type: integer, default: 1}
steps:
  - id: check
    name: check
    action: assert
    with: {that: "inputs.x < 5"}
outputs:
  doubled: "{{ inputs.x * 2 }}"
""")
    write(books, "parent", """
name: parent
description: d
inputs:
  x: {type: integer, default: 2}
steps:
  - id: sub
    name: sub
    action: runbook
    with: {name: child, inputs: {x: "{{ inputs.x }}"}}
  - id: use
    name: use
    action: assert
    with: {that: "steps.sub.outputs.doubled == inputs.x * 2"}
""")
    _, result = run(tmp_path, books, "parent")
    assert result.exit_code == 0
    _, result = run(tmp_path, books, "parent", {"x": 9})
    assert result.exit_code == 3 and "runbook child gate failed" in result.error


def test_interrupt_is_recorded_as_130(tmp_path, books, monkeypatch):
    write(books, "interrupted", """
name: interrupted
description: d
steps:
  - id: a
    name: a
    action: shell
    with: {command: "true"}
  - id: b
    name: b
    action: shell
    with: {command: "true"}
""")
    from ragops.runbook.operations import OPERATIONS

    original = OPERATIONS["shell"].fn
    calls = []

    def flaky(ctx, **params):
        calls.append(ctx.step.id)
        if ctx.step.id == "b":
            raise KeyboardInterrupt
        return original(ctx, **params)
    monkeypatch.setattr(OPERATIONS["shell"], "fn", flaky)
    _, result = run(tmp_path, books, "interrupted")
    assert result.exit_code == 130 and result.status == "interrupted" and result.failed_step == "b"
    monkeypatch.setattr(OPERATIONS["shell"], "fn", original)
    assert engine(tmp_path, books).resume(result.run_id).exit_code == 0
