"""--approve/--ack names checked against the runbook before it runs.

Why: a mistyped `--approve cost-estmate` was accepted silently; the run then stopped at the real
approval step (exit 5) after doing everything before it. A grant must name an approval (or, for
--ack, a manual) step of the runbook or of a runbook it runs with a literal name; when a nested
runbook's name is an expression, which steps exist is only known at run time and nothing is refused.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from ragops.errors import UsageError
from ragops.runbook.operations import OPERATIONS


def interactive_steps(runbook, load: Callable, seen: set[str] | None = None) -> dict[str, set[str]] | None:
    """{"approve": ids, "ack": ids} of `runbook` and the runbooks it nests; None when a nested
    runbook's name is only known at run time."""
    seen = set() if seen is None else seen
    found: dict[str, set[str]] = {"approve": set(), "ack": set()}
    for step in runbook.steps:
        spec = OPERATIONS.get(step.action)
        if spec is not None and spec.interactive in found:
            found[spec.interactive].add(step.id)
        if step.action == "runbook":
            name = step.params.get("name")
            if not isinstance(name, str) or "{{" in name:
                return None
            if name in seen:
                continue
            seen.add(name)
            nested = interactive_steps(load(name), load, seen)
            if nested is None:
                return None
            for kind, ids in nested.items():
                found[kind] |= ids
    return found


def check_grants(runbook, load: Callable, approve: Iterable[str] | None, ack: Iterable[str] | None) -> None:
    """UsageError naming the first --approve/--ack that matches no step it could grant."""
    approve, ack = list(approve or ()), list(ack or ())
    if not approve and not ack:
        return
    steps = interactive_steps(runbook, load, {runbook.name})
    if steps is None:
        return
    for flag, kind, names in (("--approve", "approve", approve), ("--ack", "ack", ack)):
        for name in names:
            if name not in steps[kind]:
                known = ", ".join(sorted(steps[kind])) or "none"
                raise UsageError(f"{flag} {name}: runbook {runbook.name} has no such "
                                 f"{'approval' if kind == 'approve' else 'manual'} step ({known})")
