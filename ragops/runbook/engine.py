"""The runbook engine: run, dry-run, --from, timeouts, retries with backoff, on_failure,
persisted state, resume, approvals and the audit log.

It never imports typer or rich: it reports through `on_event(kind, data)` and asks people through
`prompt(question, kind, step) -> bool` (None when there is no terminal: approvals fail closed).

Events: run_start, step_start, step_retry, step_end, step_skip, progress, plan_step, run_end.
"""
from __future__ import annotations

import contextvars
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragops.errors import ConfigError, ExitCode, GateFailed, NotApproved, OperationFailed, RagopsError, UsageError
from ragops.events import Event
from ragops.runbook import expr
from ragops.runbook.operations import OPERATIONS, Context, StepTimeout
from ragops.runbook.schema import Runbook, coerce_input, find_runbook, load_runbook, runbook_dirs
from ragops.runbook.state import RunStore, actor, hidden_values, new_run_id, now_iso
from ragops.runbook.validate import check_runbook, describe
from ragops.secrets import redact, redact_data

MAX_GOTOS = 100
MAX_DEPTH = 5
TIMEOUT_GRACE = 1.0      # cooperative actions get this long to report their own timeout

STATUS_EXIT = {"succeeded": ExitCode.OK, "gate_failed": ExitCode.GATE_FAILED, "failed": ExitCode.FAILED,
               "not_approved": ExitCode.NOT_APPROVED, "interrupted": ExitCode.INTERRUPTED}
KIND_STATUS = {"gate": "gate_failed", "failed": "failed", "not_approved": "not_approved",
               "interrupted": "interrupted"}


@dataclass
class RunResult:
    run_id: str | None
    runbook: str
    status: str                      # succeeded | gate_failed | failed | not_approved | interrupted | planned
    exit_code: int
    steps: list[dict] = field(default_factory=list)   # in runbook order: id, name, action, status, duration, error
    outputs: dict = field(default_factory=dict)
    failed_step: str | None = None
    error: str | None = None
    run_dir: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration: float = 0.0
    timeline: list[dict] = field(default_factory=list)  # executions: step, start/end offsets (s), status
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Engine:
    def __init__(self, config, *, runs_dir: Path | None = None, dirs: list[Path] | None = None,
                 on_event: Callable[[str, dict], None] | None = None,
                 prompt: Callable[[str, str, Any], bool] | None = None,
                 approvals: Iterable[str] = (), acks: Iterable[str] = (),
                 depth: int = 0):
        self.config = config
        if runs_dir is None:
            if config is None:
                raise ConfigError("runbook runs need a state directory (a ragops.yaml)")
            runs_dir = config.state_dir / "runbook-runs"
        self.runs_dir = Path(runs_dir)
        self.dirs = dirs if dirs is not None else runbook_dirs(config)
        self.on_event = on_event or (lambda kind, data: None)
        self.prompt = prompt
        self.approvals = set(approvals)
        self.acks = set(acks)
        self.depth = depth
        self.actor = actor()
        self.host = socket.gethostname()
        self.run_id: str | None = None
        self.runbook_name: str | None = None
        self._store: RunStore | None = None
        self._state: dict = {}
        self._context: dict = {}
        self._secrets: dict = {"inputs": {}, "steps": {}}   # real values state.json shows as ***
        self._t0 = 0.0

    def audit_sources(self) -> dict:
        """What `ragops audit` reads from the runbook engine (runbook validity, past runs)."""
        from ragops.runbook.inventory import audit_sources

        return audit_sources(self.config)

    # ---- loading ---------------------------------------------------------------------------
    def load(self, name: str) -> Runbook:
        path = find_runbook(name, self.dirs)
        return load_runbook(path, check=lambda rb: check_runbook(rb, dirs=self.dirs))

    def resolve_inputs(self, runbook: Runbook, given: dict[str, Any]) -> dict[str, Any]:
        values = {}
        for key in given:
            if key not in runbook.inputs:
                raise UsageError(f"runbook {runbook.name}: unknown input {key!r} "
                                 f"(inputs: {', '.join(runbook.inputs) or 'none'})")
        for name, spec in runbook.inputs.items():
            if name in given:
                values[name] = coerce_input(spec, given[name])
            elif spec.default is not None:
                values[name] = spec.default
            elif spec.required:
                raise UsageError(f"runbook {runbook.name}: input {name!r} is required (--input {name}=...)")
            else:
                values[name] = None
        return values

    # ---- context ---------------------------------------------------------------------------
    @property
    def context(self) -> dict:
        """The last run's expression context (inputs, steps and their outputs): what a drill report measures."""
        return self._context

    def _base_context(self, runbook: Runbook, inputs: dict) -> dict:
        config_view: dict = {}
        env_view: dict = {}
        if self.config is not None:
            config_view = self.config.env.model_dump(mode="json")
            config_view.update({"project": self.config.project, "env_name": self.config.env_name})
            host, _, port = self.config.router.listen.rpartition(":")
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            env_view = {"name": self.config.env_name, "platform": self.config.env.platform,
                        "production": self.config.env.production, "state_dir": str(self.config.state_dir),
                        "router_url": f"http://{host}:{port}", "project": self.config.project,
                        "base_dir": str(self.config.base_dir)}
        return {"inputs": dict(inputs), "steps": {}, "config": config_view, "env": env_view,
                "run": {"id": self.run_id, "runbook": runbook.name, "actor": self.actor}}

    def _emit(self, _event: str, **data) -> None:
        data.setdefault("depth", self.depth)
        data.setdefault("run_id", self.run_id)
        try:
            self.on_event(_event, data)
        except Exception:  # noqa: BLE001 - a renderer bug must not break a recovery
            pass

    def _progress_for(self, step) -> Callable[[Event | str], None]:
        def progress(message: Event | str) -> None:
            self._emit("progress", step=step.id, message=redact(str(message)))
        return progress

    # ---- approvals -------------------------------------------------------------------------
    def ask(self, step, question: str, *, kind: str) -> dict:
        granted = self.approvals if kind == "approve" else self.acks
        flag = "--approve" if kind == "approve" else "--ack"
        if step.id in granted:
            record = {"approved": True, "by": self.actor, "via": f"{flag} {step.id}", "question": question}
        elif self.prompt is not None:
            answer = bool(self.prompt(question, kind, step))
            record = {"approved": answer, "by": self.actor, "via": "terminal", "question": question}
        else:
            self._audit(step=step.id, event="approval", result="missing", question=question)
            raise NotApproved(f"step {step.id!r} needs a person ({question}); there is no terminal to ask on. "
                              f"Grant it up front with {' '.join(self._missing_grants(step))}")
        self._audit(step=step.id, event="approval", result="approved" if record["approved"] else "denied",
                    answered_by=record["by"], via=record["via"], question=question)
        if not record["approved"]:
            raise NotApproved(f"step {step.id!r}: {'denied' if kind == 'approve' else 'not confirmed'} by {record['by']}")
        return record

    def refuse_missing_grants(self, runbook: Runbook, start: int = 0) -> None:
        """Without a terminal, every unconditional approval/manual step from `start` on must be granted
        up front: NotApproved (exit 5) naming them all before the first step runs, not after a load test."""
        if self.prompt is not None:
            return
        missing = []
        for step in runbook.steps[start:]:
            spec = OPERATIONS.get(step.action)
            kind = spec.interactive if spec else None
            if kind and not step.when and step.id not in (self.approvals if kind == "approve" else self.acks):
                missing.append(f"{'--approve' if kind == 'approve' else '--ack'} {step.id}")
        if missing:
            raise NotApproved(f"runbook {runbook.name} needs a person at {len(missing)} step(s) and there is no "
                              f"terminal to ask on; nothing was run. Grant them up front with {' '.join(missing)}")

    def _missing_grants(self, step) -> list[str]:
        """The flags for this step and every later unconditional approval/manual step not granted
        yet: without a terminal all are listed at once, so one retry (not one per step) suffices."""
        steps = getattr(self, "_steps", [step])
        later = steps[next((i for i, s in enumerate(steps) if s.id == step.id), 0):]
        flags = []
        for candidate in later:
            spec = OPERATIONS.get(candidate.action)
            kind = spec.interactive if spec else None
            if kind and (candidate.id == step.id or not candidate.when) and candidate.id not in (
                    self.approvals if kind == "approve" else self.acks):
                flags.append(f"{'--approve' if kind == 'approve' else '--ack'} {candidate.id}")
        return flags

    # ---- nested runbooks -------------------------------------------------------------------
    def run_nested(self, step, name: str, inputs: dict) -> dict:
        if self.depth + 1 > MAX_DEPTH:
            raise OperationFailed(f"runbooks nested more than {MAX_DEPTH} deep")
        child = Engine(self.config, runs_dir=self.runs_dir, dirs=self.dirs,
                       on_event=self.on_event, prompt=self.prompt, approvals=self.approvals, acks=self.acks,
                       depth=self.depth + 1)
        runbook = child.load(name)
        result = child.run(runbook, inputs, parent=self.run_id)
        outputs = {"run_id": result.run_id, "status": result.status, **result.outputs}
        if result.exit_code != 0:
            error_class = {"gate_failed": GateFailed, "not_approved": NotApproved}.get(result.status, OperationFailed)
            error = error_class(f"runbook {name} {result.status.replace('_', ' ')} at step "
                                f"{result.failed_step!r}: {result.error}")
            error.outputs = outputs
            if result.status == "interrupted":
                raise KeyboardInterrupt
            raise error
        return outputs

    # ---- audit -----------------------------------------------------------------------------
    def _audit(self, **record) -> None:
        if self._store is None:
            return
        self._store.audit({"actor": self.actor, "host": self.host, "run_id": self.run_id,
                           "runbook": self.runbook_name, **record})

    def _save(self) -> None:
        if self._store is not None:
            self._store.save(self._state)

    def _keep_secrets(self, values: dict, *, step: str | None = None) -> None:
        """Keep aside the real values of whatever redaction hides in the run's inputs or a step's
        outputs, so resume can hand them to later steps (state.json shows them as ***).
        This also registers them as secrets: call it before any audit or save."""
        hidden = hidden_values(values)
        kept, key = (self._secrets["steps"], step) if step is not None else (self._secrets, "inputs")
        if (kept.get(key) or {}) == hidden:
            return                           # nothing new: no file for runs without secrets
        kept[key] = hidden
        if self._store is not None:
            self._store.save_secrets(self._secrets)

    # ---- dry run ---------------------------------------------------------------------------
    def plan(self, runbook: Runbook, inputs: dict, *, from_step: str | None = None) -> RunResult:
        """Render every step with resolved parameters; run nothing."""
        self.runbook_name = runbook.name
        values = self.resolve_inputs(runbook, inputs)
        hidden_values(values)            # registers secret-looking inputs, so `would` hides them
        context = self._base_context(runbook, values)
        start = runbook.index(from_step) if from_step else 0
        steps = []
        for index, step in enumerate(runbook.steps):
            spec = OPERATIONS[step.action]
            entry: dict[str, Any]
            if index < start and not step.always:
                entry = {"id": step.id, "name": step.name, "action": step.action, "status": "skipped",
                         "reason": f"before --from {from_step}"}
            else:
                params = {k: (v if k in spec.raw else render_lenient(v, context)) for k, v in step.params.items()}
                when = None
                if step.when:
                    try:
                        when = bool(expr.evaluate(step.when, context))
                    except expr.ExpressionError:
                        when = None
                what = redact(describe(step.action, params))
                if spec.interactive:
                    granted = step.id in (self.approvals if spec.interactive == "approve" else self.acks)
                    what += " — granted up front" if granted else (
                        " — will ask on the terminal" if self.prompt else " — no terminal: would fail closed (exit 5)")
                if when is False:
                    what = f"would skip (when: {step.when} is false)"
                elif step.when and when is None:
                    what += f" if {step.when}"
                entry = {"id": step.id, "name": step.name, "action": step.action, "status": "planned",
                         "params": redact_data(params), "when": step.when, "would": what,
                         "timeout": step.timeout, "retry": step.retry.attempts,
                         "on_failure": step.on_failure}
            steps.append(entry)
            self._emit("plan_step", **entry)
        return RunResult(run_id=None, runbook=runbook.name, status="planned", exit_code=0, steps=steps,
                         dry_run=True)

    # ---- running ---------------------------------------------------------------------------
    def run(self, runbook: Runbook, inputs: dict, *, from_step: str | None = None,
            parent: str | None = None) -> RunResult:
        values = self.resolve_inputs(runbook, inputs)
        if from_step is not None:
            try:
                runbook.index(from_step)
            except KeyError:
                raise UsageError(f"--from: runbook {runbook.name} has no step {from_step!r} "
                                 f"(steps: {', '.join(s.id for s in runbook.steps)})") from None
        self.refuse_missing_grants(runbook, runbook.index(from_step) if from_step else 0)
        self.run_id = new_run_id(runbook.name)
        self.runbook_name = runbook.name
        self._store = RunStore(self.runs_dir, self.run_id)
        self._state = {
            "run_id": self.run_id, "runbook": runbook.name, "path": str(runbook.path),
            "content_hash": runbook.content_hash, "inputs": values, "status": "running",
            "exit_code": None, "started_at": now_iso(), "finished_at": None, "actor": self.actor,
            "host": self.host, "env": self.config.env_name if self.config is not None else None,
            "from_step": from_step, "parent": parent, "failed_step": None, "error": None,
            "steps": {}, "timeline": [], "resumes": [], "outputs": {},
        }
        self._secrets = {"inputs": {}, "steps": {}}
        self._keep_secrets(values)
        self._context = self._base_context(runbook, values)
        start = 0
        if from_step:
            start = runbook.index(from_step)
            for step in runbook.steps[:start]:
                self._state["steps"][step.id] = {"status": "skipped", "reason": f"before --from {from_step}"}
                self._context["steps"][step.id] = {"status": "skipped", "outputs": {}}
        self._audit(event="run_start", inputs=values, from_step=from_step, content_hash=runbook.content_hash,
                    env=self._state["env"], parent=parent)
        self._save()
        self._emit("run_start", runbook=runbook.name, inputs=redact_data(values), run_dir=str(self._store.dir))
        return self._execute(runbook, start)

    def resume(self, run_id: str, *, force: bool = False) -> RunResult:
        store = RunStore(self.runs_dir, run_id)
        state = store.load()
        if state.get("status") == "succeeded":
            raise UsageError(f"run {run_id} already succeeded; nothing to resume")
        path = Path(state["path"])
        if not path.exists():
            raise ConfigError(f"run {run_id}: runbook file {path} is gone")
        runbook = load_runbook(path, check=lambda rb: check_runbook(rb, dirs=self.dirs))
        changed = runbook.content_hash != state.get("content_hash")
        if changed and not force:
            raise UsageError(f"run {run_id}: runbook {runbook.name} changed since the run started "
                             f"(content hash {state.get('content_hash', '')[:12]} -> {runbook.content_hash[:12]}); "
                             f"refusing to resume", hint=f"ragops runbook resume {run_id} --force")
        self.run_id = run_id
        self.runbook_name = runbook.name
        self._store = store
        self._state = state
        self._secrets = store.load_secrets()      # real values for what state.json shows as ***
        self._context = self._base_context(runbook, {**(state.get("inputs") or {}), **self._secrets["inputs"]})
        ids = [s.id for s in runbook.steps]
        start = None
        failed = state.get("failed_step")
        if failed in ids:
            start = ids.index(failed)
        else:
            for index, step in enumerate(runbook.steps):
                if (state["steps"].get(step.id) or {}).get("status") not in ("ok", "skipped"):
                    start = index
                    break
        if start is None:
            raise UsageError(f"run {run_id}: no failed or unfinished step to resume at")
        for step in runbook.steps[:start]:
            result = state["steps"].get(step.id) or {}
            outputs = {**(result.get("outputs") or {}), **(self._secrets["steps"].get(step.id) or {})}
            self._context["steps"][step.id] = {"status": result.get("status", "skipped"), "outputs": outputs,
                                               "error": result.get("error"), "duration": result.get("duration"),
                                               "attempts": result.get("attempts")}
        for step in runbook.steps[start:]:
            state["steps"].pop(step.id, None)
        state["resumes"].append({"at": now_iso(), "from_step": runbook.steps[start].id, "actor": self.actor,
                                 "forced": bool(changed and force), "content_hash": runbook.content_hash})
        state.update({"status": "running", "failed_step": None, "error": None, "exit_code": None,
                      "content_hash": runbook.content_hash})
        self._audit(event="resume", from_step=runbook.steps[start].id, forced=bool(changed and force),
                    content_hash=runbook.content_hash)
        self._save()
        self._emit("run_start", runbook=runbook.name, inputs=state.get("inputs"), run_dir=str(store.dir),
                   resumed_at=runbook.steps[start].id)
        return self._execute(runbook, start)

    def _execute(self, runbook: Runbook, start: int) -> RunResult:
        self._t0 = time.monotonic()
        self._steps = runbook.steps   # ask() names every grant still missing, not only the first
        index = start
        aborted_by: tuple[str, str, str] | None = None     # (step, kind, error)
        first_failure: tuple[str, str, str] | None = None
        gotos = 0
        interrupted = False
        while index < len(runbook.steps):
            step = runbook.steps[index]
            if aborted_by is not None and not step.always:
                self._record_skip(step, f"not run: aborted at {aborted_by[0]}")
                index += 1
                continue
            try:
                outcome, kind, error = self._run_step(step)
            except KeyboardInterrupt:
                self._finish_step(step, "interrupted", {}, "interrupted", 0.0, 0, time.monotonic())
                aborted_by = aborted_by or (step.id, "interrupted", "interrupted")
                interrupted = True
                break
            if outcome == "failed":
                failure = (step.id, kind or "failed", error or "")   # a failed step always has both
                first_failure = first_failure or failure
                if kind == "not_approved" or step.on_failure == "abort":
                    aborted_by = aborted_by or failure
                elif step.goto is not None:
                    gotos += 1
                    if gotos > MAX_GOTOS:
                        aborted_by = aborted_by or (step.id, "failed", f"more than {MAX_GOTOS} gotos; stopping")
                    else:
                        index = runbook.index(step.goto)
                        continue
            index += 1
        # remaining always-steps after an interrupt are not run
        if interrupted:
            for step in runbook.steps[index + 1:]:
                self._record_skip(step, "not run: interrupted")
        decisive = aborted_by or first_failure
        status = "succeeded" if decisive is None else KIND_STATUS.get(decisive[1], "failed")
        outputs = {}
        if status == "succeeded" and runbook.outputs:
            try:
                outputs = expr.render(runbook.outputs, self._context)
            except expr.ExpressionError as exc:
                status, decisive = "failed", ("outputs", "failed", f"runbook outputs: {exc.message}")
        self._state.update({"status": status, "exit_code": int(STATUS_EXIT[status]), "finished_at": now_iso(),
                            "failed_step": decisive[0] if decisive else None,
                            "error": redact(decisive[2]) if decisive else None, "outputs": outputs})
        self._save()
        if status == "succeeded" and self._store is not None:
            self._store.drop_secrets()       # only resume needs it, and a succeeded run cannot resume
        duration = time.monotonic() - self._t0
        self._audit(event="run_end", result=status, exit_code=int(STATUS_EXIT[status]), duration=round(duration, 3),
                    failed_step=decisive[0] if decisive else None, error=decisive[2] if decisive else None)
        result = RunResult(run_id=self.run_id, runbook=runbook.name, status=status,
                           exit_code=int(STATUS_EXIT[status]), outputs=outputs,
                           failed_step=decisive[0] if decisive else None,
                           error=redact(decisive[2]) if decisive else None, run_dir=str(self._store.dir) if self._store else None,
                           started_at=self._state["started_at"], finished_at=self._state["finished_at"],
                           duration=round(duration, 3), timeline=list(self._state["timeline"]))
        for step in runbook.steps:
            entry = self._state["steps"].get(step.id) or {"status": "not run"}
            result.steps.append({"id": step.id, "name": step.name, "action": step.action,
                                 "status": entry.get("status"), "duration": entry.get("duration"),
                                 "attempts": entry.get("attempts"), "error": entry.get("error"),
                                 "reason": entry.get("reason"), "outputs": entry.get("outputs") or {}})
        # events are for display: redacted like everything else a person sees (the result keeps real values)
        self._emit("run_end", **redact_data({k: v for k, v in result.to_dict().items() if k not in ("depth",)}))
        return result

    def _record_skip(self, step, reason: str) -> None:
        self._state["steps"][step.id] = {"status": "skipped", "reason": reason}
        self._context["steps"][step.id] = {"status": "skipped", "outputs": {}, "error": None}
        self._audit(step=step.id, action=step.action, event="step", result="skipped", reason=reason)
        self._save()
        self._emit("step_skip", step=step.id, name=step.name, reason=reason)

    def _finish_step(self, step, status: str, outputs: dict, error: str | None, duration: float, attempts: int,
                     started: float, kind: str | None = None, params: dict | None = None) -> None:
        self._keep_secrets(outputs, step=step.id)
        entry = {"status": status, "outputs": outputs, "error": redact(error) if error else None,
                 "kind": kind, "duration": round(duration, 3), "attempts": attempts, "action": step.action,
                 "finished_at": now_iso()}
        self._state["steps"][step.id] = entry
        self._state["timeline"].append({"step": step.id, "name": step.name, "status": status,
                                        "start": round(started - self._t0, 3),
                                        "end": round(started - self._t0 + duration, 3)})
        self._context["steps"][step.id] = {"status": status, "outputs": outputs, "error": entry["error"],
                                           "duration": entry["duration"], "attempts": attempts}
        self._audit(step=step.id, action=step.action, event="step", result=status, kind=kind,
                    params=params or {}, outputs=outputs, duration=round(duration, 3), attempts=attempts,
                    error=error)
        self._save()
        self._emit("step_end", step=step.id, name=step.name, status=status, kind=kind, error=entry["error"],
                   duration=entry["duration"], attempts=attempts, outputs=redact_data(outputs))

    def _run_step(self, step) -> tuple[str, str | None, str | None]:
        """Run one step (with when, rendering, retries and timeout); returns (outcome, kind, error)."""
        spec = OPERATIONS[step.action]
        started = time.monotonic()
        if step.when:
            try:
                if not expr.evaluate(step.when, self._context):
                    self._record_skip(step, f"when: {step.when} is false")
                    return "skipped", None, None
            except expr.ExpressionError as exc:
                self._finish_step(step, "failed", {}, f"when: {exc.message}", time.monotonic() - started, 0,
                                  started, kind="failed")
                return "failed", "failed", f"when: {exc.message}"
        try:
            params = {k: (v if k in spec.raw else expr.render(v, self._context)) for k, v in step.params.items()}
        except expr.ExpressionError as exc:
            message = f"parameters: {exc.message}"
            self._finish_step(step, "failed", {}, message, time.monotonic() - started, 0, started, kind="failed")
            return "failed", "failed", message
        self._emit("step_start", step=step.id, name=step.name, action=step.action, params=redact_data(params))
        delays = step.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                raw = self._attempt(step, spec, params)
                outputs = dict(raw or {})
                if step.outputs:
                    declared = expr.render(step.outputs, {**self._context, "result": outputs})
                    outputs.update(declared)
                self._finish_step(step, "ok", outputs, None, time.monotonic() - started, attempt, started,
                                  params=params)
                return "ok", None, None
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a step result
                kind = self._kind(step, spec, exc)
                message = exc.message if isinstance(exc, RagopsError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, RagopsError) and not isinstance(exc, expr.ExpressionError):
                    self._audit(step=step.id, event="traceback", detail=traceback.format_exc()[-4000:])
                if kind != "not_approved" and attempt <= len(delays):
                    wait = delays[attempt - 1]
                    self._audit(step=step.id, action=step.action, event="retry", attempt=attempt, error=message,
                                wait=wait)
                    self._emit("step_retry", step=step.id, attempt=attempt, of=step.retry.attempts, error=redact(message),
                               wait=wait)
                    time.sleep(wait)
                    continue
                outputs = getattr(exc, "outputs", None) or {}
                status = "timeout" if isinstance(exc, StepTimeout) else (
                    "not_approved" if kind == "not_approved" else "failed")
                self._finish_step(step, status, outputs, message, time.monotonic() - started, attempt, started,
                                  kind=kind, params=params)
                return "failed", kind, message

    @staticmethod
    def _kind(step, spec, exc: BaseException) -> str:
        if isinstance(exc, NotApproved):
            return "not_approved"
        if isinstance(exc, ConfigError):   # missing credentials or settings: fix the config, no gate failed
            return "failed"
        gate = step.gate if step.gate is not None else (spec.gate or isinstance(exc, GateFailed))
        return "gate" if gate else "failed"

    def _attempt(self, step, spec, params: dict) -> dict | None:
        deadline = time.monotonic() + step.timeout if step.timeout else None
        ctx = Context(config=self.config, step=step, context=self._context, engine=self,
                                        progress=self._progress_for(step), deadline=deadline)
        if step.timeout is None:
            return spec.call(ctx, params)
        box: dict = {}

        def target() -> None:
            try:
                box["value"] = spec.call(ctx, params)
            except BaseException as exc:  # noqa: BLE001 - handed to the engine thread
                box["error"] = exc

        # in this thread's context: an operation the step runs sees the drill's operations lease
        worker = threading.Thread(target=contextvars.copy_context().run, args=(target,),
                                  name=f"runbook-step-{step.id}", daemon=True)
        worker.start()
        try:
            worker.join(step.timeout + TIMEOUT_GRACE)
        except KeyboardInterrupt:
            ctx.cancelled.set()
            raise
        if worker.is_alive():
            ctx.cancelled.set()
            worker.join(TIMEOUT_GRACE)
            raise StepTimeout(f"timed out after {step.timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")


def render_lenient(value: Any, context: dict) -> Any:
    """Like expr.render, but references not known yet (outputs of steps that have not run)
    render as <expression> instead of failing: for --dry-run."""
    import re

    if isinstance(value, str):
        def one(text: str) -> Any:
            try:
                for ref in expr.references(expr.parse(text)):
                    if ref[0] == "steps" and len(ref) > 1 and ref[1] not in context.get("steps", {}):
                        return f"<{text}>"       # known only at run time (even inside default())
                return expr.evaluate(text, context)
            except expr.ExpressionError:
                return f"<{text}>"
        whole = re.fullmatch(r"\s*\{\{(.*?)\}\}\s*", value, re.DOTALL)
        if whole and value.count("{{") == 1:
            return one(whole.group(1).strip())
        return re.sub(r"\{\{(.*?)\}\}", lambda m: expr.to_text(one(m.group(1).strip())), value)
    if isinstance(value, dict):
        return {k: render_lenient(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_lenient(v, context) for v in value]
    return value
