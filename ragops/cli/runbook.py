"""`ragops runbook list|show|validate|run|resume|runs` and `ragops drill run`."""
from __future__ import annotations

import typer

runbook_app = typer.Typer(help="Executable runbooks: the guide's checklists and recovery procedures.",
                          no_args_is_help=True)
drill_app = typer.Typer(help="Disaster-recovery drills: run a drill runbook, measure RTO/RPO, write a report.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runbook_app, name="runbook")
    app.add_typer(drill_app, name="drill")


# ---- helpers -----------------------------------------------------------------------------

def _config_or_none(env):
    """The config when there is one; list/show/validate also work without a ragops.yaml."""
    from ragops.errors import ConfigError

    try:
        return env.config
    except ConfigError as exc:
        if "no such config file" in exc.message:
            return None
        raise


def _parse_inputs(pairs: list[str] | None) -> dict[str, str]:
    from ragops.errors import UsageError

    values: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--input expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        values[key.strip()] = value
    return values


def _renderer(env):
    """Turn engine events into status lines on stderr."""
    from ragops.durations import format_duration

    def on_event(kind: str, data: dict) -> None:
        indent = "  " * (data.get("depth") or 0)
        if kind == "run_start":
            where = f" (resuming at {data['resumed_at']})" if data.get("resumed_at") else ""
            env.status(f"{indent}runbook {data['runbook']}: run {data['run_id']}{where}")
        elif kind == "step_start":
            env.status(f"{indent}→ {data['step']}: {data['name']} [{data['action']}]")
        elif kind == "progress":
            env.status(f"{indent}    {data['message']}")
        elif kind == "step_retry":
            env.status(f"{indent}  ↻ {data['step']}: attempt {data['attempt']}/{data['of']} failed "
                       f"({data['error']}); retrying in {format_duration(data['wait'])}", style="yellow")
        elif kind == "step_end":
            mark = {"ok": "✓"}.get(data["status"], "✗")
            tail = f" ({format_duration(data['duration'])})"
            if data["status"] != "ok":
                tail += f": {data['error']}"
            env.status(f"{indent}{mark} {data['step']}{tail}", style=None if data["status"] == "ok" else "red")
        elif kind == "step_skip":
            env.status(f"{indent}- {data['step']}: skipped ({data['reason']})", style="dim")
        elif kind == "plan_step":
            pass
    return on_event


def _prompt(env):
    if not env.interactive:
        return None

    def ask(question: str, kind: str, step) -> bool:
        from rich.prompt import Confirm

        verb = "Approve" if kind == "approve" else "Confirm"
        return Confirm.ask(f"[{step.id}] {verb}: {question}", console=env.err, default=False)
    return ask


def _summary(result) -> object:
    from rich.table import Table

    from ragops.durations import format_duration

    table = Table(title=f"runbook {result.runbook}" + (f" · run {result.run_id}" if result.run_id else " · dry run"))
    table.add_column("step")
    table.add_column("action")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for step in result.steps:
        status = step["status"] or "not run"
        style = {"ok": "green", "planned": "cyan", "skipped": "dim"}.get(status, "red")
        detail = step.get("error") or step.get("reason") or step.get("would") or ""
        duration = format_duration(step["duration"]) if step.get("duration") is not None else ""
        table.add_row(step["id"], step["action"], f"[{style}]{status}[/]", duration, detail)
    if not result.dry_run:
        table.caption = (f"{result.status} (exit {result.exit_code}) in {format_duration(result.duration)}"
                         + (f" · audit: {result.run_dir}/audit.jsonl" if result.run_dir else ""))
    return table


def _exit(code: int, message: str, hint: str | None = None):
    """An error carrying a specific exit code; main() prints it and exits with that code."""
    from ragops.errors import RagopsError

    error = RagopsError(message, hint=hint)
    error.exit_code = code
    return error


def _finish(env, result) -> None:
    env.emit(result.to_dict(), lambda _: _summary(result))
    if result.exit_code:
        hint = None
        if result.run_id and result.status not in ("interrupted",):
            hint = f"fix the cause (or grant it), then: ragops runbook resume {result.run_id}"
        raise _exit(result.exit_code, f"runbook {result.runbook} {result.status.replace('_', ' ')} at step "
                                      f"{result.failed_step!r}: {result.error or ''}", hint)


def _engine(env, approve=(), ack=(), config=None, **kwargs):
    from ragops.errors import NotApproved
    from ragops.runbook.engine import Engine

    for flag, values in (("--approve", approve), ("--ack", ack)):
        if any(not value.strip() for value in values or ()):   # "$UNSET_CI_VARIABLE" grants nothing
            raise NotApproved(f"{flag}: an empty value grants no step (is the CI variable that should name "
                              f"the step unset?); nothing was run", hint=f"{flag} STEP_ID, e.g. {flag} on-call")

    config = config if config is not None else env.config
    return Engine(config, on_event=_renderer(env), prompt=_prompt(env), approvals=approve or (),
                  acks=ack or (), **kwargs)


# ---- runbook commands --------------------------------------------------------------------

@runbook_app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """List the runbooks (the configured runbooks.dir, then the ones shipped with ragops).

    Example: ragops runbook list --output json
    """
    from ragops.runbook.schema import list_runbooks, parse_runbook, runbook_dirs

    env = ctx.obj
    rows = []
    for path in list_runbooks(runbook_dirs(_config_or_none(env))):
        runbook, issues = parse_runbook(path)
        rows.append({"name": path.stem, "path": str(path),
                     "description": (runbook.description.strip().splitlines() or [""])[0] if runbook else "",
                     "steps": len(runbook.steps) if runbook else None, "valid": not issues})

    def render(data):
        from rich.table import Table

        table = Table()
        for column in ("name", "steps", "description"):
            table.add_column(column)
        for row in data:
            table.add_row(row["name"], str(row["steps"] or "?"), row["description"] + ("" if row["valid"] else " [invalid]"))
        return table
    env.emit(rows, render)


@runbook_app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., help="Runbook name or file.")) -> None:
    """Show a runbook's inputs and steps.

    Example: ragops runbook show pre-deploy
    """
    from ragops.runbook.schema import find_runbook, parse_runbook, runbook_dirs

    env = ctx.obj
    path = find_runbook(name, runbook_dirs(_config_or_none(env)))
    runbook, issues = parse_runbook(path)
    if runbook is None:
        from ragops.runbook.schema import RunbookInvalid

        raise RunbookInvalid(issues)
    data = {"name": runbook.name, "path": str(path), "description": runbook.description,
            "inputs": {k: {"type": v.type, "default": v.default, "required": v.required, "description": v.description}
                       for k, v in runbook.inputs.items()},
            "steps": [{"id": s.id, "name": s.name, "action": s.action, "with": s.params, "when": s.when,
                       "timeout": s.timeout, "retry": s.retry.attempts,
                       "on_failure": s.on_failure, "always": s.always}
                      for s in runbook.steps],
            "issues": [i.format() for i in issues]}

    def render(d):
        lines = [f"{d['name']}: {d['description'].strip()}", f"file: {d['path']}", "", "inputs:"]
        for key, spec in d["inputs"].items():
            lines.append(f"  {key} ({spec['type']}, default {spec['default']!r}): {spec['description']}")
        lines.append("")
        lines.append("steps:")
        for number, step in enumerate(d["steps"], 1):
            extra = []
            if step["when"]:
                extra.append(f"when {step['when']}")
            if step["on_failure"] != "abort":
                extra.append(f"on failure {step['on_failure']}")
            if step["always"]:
                extra.append("always")
            lines.append(f"  {number:2}. {step['id']} [{step['action']}] {step['name']}"
                         + (f"  ({'; '.join(extra)})" if extra else ""))
        for issue in d["issues"]:
            lines.append(f"invalid: {issue}")
        return "\n".join(lines)
    env.emit(data, render)


@runbook_app.command("validate")
def validate(ctx: typer.Context,
             names: list[str] | None = typer.Argument(None, help="Runbook names or files (default: all)."),
             ) -> None:
    """Validate runbooks: schema, expressions, references, and that every step names an operation
    of this installation with parameters it takes. Errors are FILE:LINE: path: message; exit 2 when
    any is invalid.

    Example: ragops runbook validate

    Example: ragops runbook validate runbooks/pre-deploy.yaml
    """
    from ragops.runbook.schema import find_runbook, list_runbooks, parse_runbook, runbook_dirs
    from ragops.runbook.validate import check_runbook

    env = ctx.obj
    dirs = runbook_dirs(_config_or_none(env))
    paths = [find_runbook(n, dirs) for n in names] if names else list_runbooks(dirs)
    report = []
    for path in paths:
        runbook, issues = parse_runbook(path)
        if runbook is not None:
            issues += check_runbook(runbook, dirs=dirs)
        report.append({"name": path.stem, "path": str(path), "valid": not issues,
                       "issues": [{"file": i.file, "line": i.line, "message": i.message, "text": i.format()}
                                  for i in issues]})
    valid = all(r["valid"] for r in report)

    def render(data):
        lines = []
        for entry in data["runbooks"]:
            if entry["valid"]:
                lines.append(f"{entry['path']}: valid")
            lines.extend(i["text"] for i in entry["issues"])
        return "\n".join(lines) or "no runbooks found"
    env.emit({"valid": valid, "runbooks": report}, render)
    if not valid:
        bad = sum(1 for r in report if not r["valid"])
        raise _exit(2, f"{bad} of {len(report)} runbook(s) invalid")


@runbook_app.command("run")
def run(ctx: typer.Context,
        name: str = typer.Argument(..., help="Runbook name or file."),
        inputs: list[str] | None = typer.Option(None, "--input", "-i", help="An input as key=value (repeatable)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Render every step with resolved parameters; run nothing."),
        from_step: str | None = typer.Option(None, "--from", help="Start at this step (earlier ones are skipped)."),
        approve: list[str] | None = typer.Option(None, "--approve", help="Grant an approval step up front (CI)."),
        ack: list[str] | None = typer.Option(None, "--ack", help="Confirm a manual checklist step up front (CI)."),
        ) -> None:
    """Run a runbook. Exit 0 when every step passed, 3 when a gate failed, 5 when an approval is
    missing or denied, 1 when a step failed, 130 when interrupted. Approval and manual steps ask
    on a terminal; without one they fail closed unless granted with --approve/--ack.

    Example: ragops runbook run pre-deploy --input expected_rps=50 --ack on-call --approve cost-estimate

    Example: ragops runbook run db-corruption --dry-run
    """
    from ragops.runbook.grants import check_grants

    env = ctx.obj
    engine = _engine(env, approve, ack)
    runbook = engine.load(name)
    check_grants(runbook, engine.load, approve, ack)
    values = _parse_inputs(inputs)
    run = engine.plan if dry_run else engine.run
    result = run(runbook, values, from_step=from_step)
    _finish(env, result)


@runbook_app.command("resume")
def resume(ctx: typer.Context,
           run_id: str = typer.Argument(..., help="The run to continue (ragops runbook runs)."),
           force: bool = typer.Option(False, "--force", help="Resume even though the runbook file changed."),
           approve: list[str] | None = typer.Option(None, "--approve", help="Grant an approval step up front."),
           ack: list[str] | None = typer.Option(None, "--ack", help="Confirm a manual step up front."),
           ) -> None:
    """Continue a failed or interrupted run at the step that failed, with the outputs of the steps
    that passed. Refuses when the runbook changed since the run started, unless --force.

    Example: ragops runbook resume 20260101T030000Z-db-corruption-a1b2c3
    """
    env = ctx.obj
    engine = _engine(env, approve, ack)
    _finish(env, engine.resume(run_id, force=force))


@runbook_app.command("runs")
def runs(ctx: typer.Context, limit: int = typer.Option(20, "--limit", min=1, max=10_000, help="How many runs to show.")) -> None:
    """List recent runbook runs (newest first) with their result.

    Example: ragops runbook runs --output json
    """
    from ragops.runbook.state import list_runs

    env = ctx.obj
    rows = [{"run_id": s.get("run_id"), "runbook": s.get("runbook"), "status": s.get("status"),
             "exit_code": s.get("exit_code"), "started_at": s.get("started_at"), "finished_at": s.get("finished_at"),
             "actor": s.get("actor"), "failed_step": s.get("failed_step"), "error": s.get("error")}
            for s in list_runs(env.config.state_dir / "runbook-runs")[:limit]]

    def render(data):
        from rich.table import Table

        table = Table()
        for column in ("run", "runbook", "status", "started", "actor", "failed step"):
            table.add_column(column)
        for row in data:
            table.add_row(row["run_id"], row["runbook"], row["status"], row["started_at"] or "", row["actor"] or "",
                          row["failed_step"] or "")
        return table
    env.emit(rows, render)


# ---- drills ------------------------------------------------------------------------------

@drill_app.command("run")
def drill_run(ctx: typer.Context,
              name: str = typer.Argument(..., help="A drill runbook, e.g. drill-backup-restore (or backup-restore)."),
              report: str | None = typer.Option(None, "--report", help="Report folder (default <state_dir>/drills/<run>)."),
              inputs: list[str] | None = typer.Option(None, "--input", "-i", help="An input as key=value (repeatable)."),
              allow_production: bool = typer.Option(False, "--allow-production",
                                                    help="Allow a drill against an environment marked production."),
              approve: list[str] | None = typer.Option(None, "--approve", help="Grant an approval step up front."),
              ack: list[str] | None = typer.Option(None, "--ack", help="Confirm a manual step up front."),
              ) -> None:
    """Run a DR drill against a non-production environment, measure RTO and RPO, compare them with
    the slo targets and write report.json, report.md and report.html. Exit 3 when a target is missed.

    Example: ragops -e staging drill run backup-restore --report ./drill-reports
    """
    from ragops.deploy.oplock import operation
    from ragops.drill import run_drill

    env = ctx.obj
    engine = _engine(env, approve, ack)
    with operation(env.config, f"ragops drill run {name}", progress=env.progress("drill")):
        outcome = run_drill(env.config, name, engine=engine, inputs=_parse_inputs(inputs), report_dir=report,
                            allow_production=allow_production)

    def render(d):
        from ragops.durations import format_duration

        lines = [f"drill {d['drill']}: {d['verdict']}"]
        for key in ("rto", "rpo"):
            m = d[key]
            measured = format_duration(m["seconds"]) if m["seconds"] is not None else "not measured"
            lines.append(f"  {key.upper()} {measured} (target {format_duration(m['target_seconds'])}): "
                         f"{'met' if m['met'] else 'MISSED' if m['met'] is False else 'unknown'}")
        lines.append(f"  report: {d['report_dir']}")
        return "\n".join(lines)
    env.emit(outcome, render)
    if outcome["exit_code"]:
        raise _exit(outcome["exit_code"], f"drill {outcome['drill']}: {outcome['verdict']}")
