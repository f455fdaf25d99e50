"""What the runbook engine can tell about an environment: each runbook's validity and the past runs.
`ragops audit` reads these through its caller, so the audit never imports the runbook engine."""
from __future__ import annotations

from ragops.runbook.schema import list_runbooks, parse_runbook, runbook_dirs
from ragops.runbook.state import list_runs
from ragops.runbook.validate import check_runbook


def validity(config) -> list[dict]:
    """Each runbook's name and its validation issues, as `ragops runbook validate` reports them."""
    dirs = runbook_dirs(config)
    rows = []
    for path in list_runbooks(dirs):
        runbook, issues = parse_runbook(path)
        if runbook is not None:
            issues += check_runbook(runbook, dirs=dirs)
        rows.append({"name": path.stem, "issues": [i.format() for i in issues]})
    return rows


def runs(config) -> list[dict]:
    """Every run's state, newest first."""
    return list_runs(config.state_dir / "runbook-runs")


def audit_sources(config) -> dict:
    """The keyword arguments `ragops.audit.engine.run_audit` takes for the runbook facts."""
    return {"runbooks": lambda: validity(config), "runbook_runs": lambda: runs(config)}
