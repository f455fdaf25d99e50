"""Operation-level checks of a parsed runbook: every step names a registered operation, its `with:`
keys are parameters that operation declares (and the required ones are there), bare-expression
parameters (assert's `that`) parse and reference what exists, nested runbooks exist.
Also the one-line description of a step for --dry-run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragops.errors import ConfigError
from ragops.runbook.operations import OPERATIONS
from ragops.runbook.schema import Issue, Runbook, check_expression, find_runbook


def check_runbook(runbook: Runbook, *, dirs: list[Path] | None = None) -> list[Issue]:
    issues: list[Issue] = []
    for index, step in enumerate(runbook.steps):
        where = ("steps", index)
        op = OPERATIONS.get(step.action)
        if op is None:
            if step.action:
                issues.append(runbook.issue(where + ("action",), f"unknown action {step.action!r} "
                                            f"(known: {', '.join(sorted(OPERATIONS))})"))
            continue
        for key in step.params:
            if key not in op.params:
                issues.append(runbook.issue(where + ("with", key), f"action {step.action!r} has no parameter "
                                            f"{key!r} (parameters: {', '.join(op.params) or 'none'})"))
        for key in op.required:
            if key not in step.params:
                issues.append(runbook.issue(where + ("with", key), f"action {step.action!r} needs this parameter",
                                            line_at=where + (("with",) if step.params else ("action",))))
        for key in op.raw:
            issues.extend(_bare_expressions(runbook, index, key, step.params.get(key)))
        if step.action == "runbook":
            issues.extend(_nested(runbook, index, step.params.get("name"), dirs or [runbook.path.parent]))
    return issues


def _bare_expressions(runbook: Runbook, index: int, key: str, value: Any) -> list[Issue]:
    """A parameter kept as expressions (one or a list): each parses and references what exists.
    Text with {{ }} inside was checked as a template already."""
    where = ("steps", index, "with", key)
    if isinstance(value, list):
        items: list[tuple[tuple, Any]] = [(where + (number,), text) for number, text in enumerate(value)]
    else:
        items = [(where, value)] if value is not None else []
    issues = []
    for at, text in items:
        text = str(text).strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            continue
        issues.extend(check_expression(runbook, text, at, index))
    return issues


def _nested(runbook: Runbook, index: int, name: Any, dirs: list[Path]) -> list[Issue]:
    if not isinstance(name, str) or "{{" in name:
        return []
    where = ("steps", index, "with", "name")
    if name == runbook.name:
        return [runbook.issue(where, "a runbook cannot run itself")]
    try:
        find_runbook(name, dirs)
    except ConfigError:
        return [runbook.issue(where, f"no runbook named {name!r}")]
    return []


def describe(action_name: str, params: dict) -> str:
    """One line for --dry-run: what the step would do."""
    op = OPERATIONS.get(action_name)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    verb = "would ask" if op and op.interactive else "would run"
    return f"{verb} {action_name}" + (f" ({shown})" if shown else "")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
