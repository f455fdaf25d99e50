"""The runbook's own steps: assert, approval, manual, sleep, nested runbook, baseline, schedule."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ragops.errors import ConfigError, GateFailed
from ragops.runbook import expr
from ragops.runbook.operations.common import duration as seconds_of
from ragops.runbook.operations.common import flag, with_outputs
from ragops.runbook.operations.registry import Context, operation
from ragops.runbook.state import latest_step_outputs


def assert_expressions(that: Any) -> list[str]:
    """The expressions of an assert's `that` (one or a list), without {{ }}."""
    texts = [str(check).strip() for check in (that if isinstance(that, list) else [that])]
    return [t[2:-2].strip() if t.startswith("{{") and t.endswith("}}") else t for t in texts]


@operation("assert", gate=True, raw=("that",))
def assert_(ctx: Context, *, that: str | list, message: str | None = None) -> dict:
    """Check one or more expressions over inputs and step outputs (a gate).

    that: an expression, or a list of expressions, that must all be true; message: what failed, for people.
    """
    results = []
    for text in assert_expressions(that):
        value = expr.evaluate(text, ctx.context)
        results.append({"expression": text, "passed": bool(value)})
        if not value:
            values = {".".join(map(str, ref)): expr.lookup(ctx.context, ref, strict=False)
                      for ref in expr.references(expr.parse(text))}
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            said = expr.render(message, ctx.context) if isinstance(message, str) else message
            raise with_outputs(GateFailed(f"{said + ': ' if said else ''}{text} is false"
                                          + (f" ({shown})" if shown else "")), {"checks": results})
    return {"checks": results}


@operation("approval", interactive="approve")
def approval(ctx: Context, *, message: str | None = None, approvers: Any = None) -> dict:
    """Ask a person to approve; without a terminal it needs --approve STEP (else exit 5).

    approvers: who may approve (informational).
    """
    return ctx.engine.ask(ctx.step, str(message or ctx.step.name), kind="approve")


@operation("manual", interactive="ack")
def manual(ctx: Context, *, item: str | None = None, instructions: str | None = None,
           checklist: list | None = None) -> dict:
    """A checklist item a person must confirm; without a terminal it needs --ack STEP."""
    if instructions:
        ctx.progress(str(instructions))
    for line in checklist or []:
        ctx.progress(f"  [ ] {line}")
    return ctx.engine.ask(ctx.step, str(item or ctx.step.name), kind="ack")


@operation("sleep")
def sleep(ctx: Context, *, duration: str | float) -> dict:
    """Wait a while (e.g. let metrics settle)."""
    seconds = seconds_of(duration, "duration")
    if seconds is None:
        raise ConfigError("duration: expected a duration, got ''")
    ctx.sleep(seconds)
    return {"slept_seconds": seconds}


@operation("runbook")
def runbook(ctx: Context, *, name: str, inputs: dict | None = None) -> dict:
    """Run another runbook as one step; its outputs become this step's outputs."""
    return ctx.engine.run_nested(ctx.step, str(name), inputs or {})


@operation("baseline")
def baseline(ctx: Context, *, runbook: str, step: str, required: Any = False) -> dict:
    """Read a step's outputs from the latest successful run of a runbook (e.g. pre-deploy's load test).

    required: fail when there is none (default false).
    """
    found = latest_step_outputs(ctx.engine.runs_dir, str(runbook), str(step))
    if found is None:
        if flag(required):
            raise GateFailed(f"no successful {runbook} run with step {step!r} to compare with")
        return {"found": False}
    run_id, outputs = found
    return {"found": True, "run_id": run_id, **outputs}


@operation("schedule")
def schedule(ctx: Context, *, name: str, command: str, after: Any = None, until: Any = None,
             every: Any = None) -> dict:
    """Record a follow-up (e.g. the 24-48 h watch) with a ready-to-install cron line.

    after/until: when to start and stop (e.g. 1h, 48h); every: cron interval in minutes (default 60).
    """
    config = ctx.require_config()
    now = time.time()
    start = seconds_of(after, "after", 0.0)
    stop = seconds_of(until, "until", 48 * 3600.0)
    minutes = int(every or 60)
    record = {"name": str(name), "command": str(command),
              "starts_at": datetime.fromtimestamp(now + start, UTC).isoformat(),
              "ends_at": datetime.fromtimestamp(now + stop, UTC).isoformat(),
              "cron": f"*/{minutes} * * * * {command}" if minutes < 60 else f"0 * * * * {command}",
              "run_id": ctx.engine.run_id}
    folder = config.state_dir / "schedules"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['name']}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "file": str(path)}
