"""Every runbook operation, one module per area. Importing this package fills OPERATIONS.

To add an operation: write a function with `@operation("area.verb")` in the module of its area
(or a new module listed below); its keyword-only parameters are the step's `with:` keys.
"""
from __future__ import annotations

from ragops.runbook.operations import (  # noqa: F401 - imported for their @operation registrations
    audit,
    backup,
    db,
    deploy,
    failover,
    flow,
    ha,
    http,
    monitoring,
    pitr,
    platform,
    shell,
    sql,
)
from ragops.runbook.operations.registry import OPERATIONS, Context, Operation, StepTimeout, operation

__all__ = ["OPERATIONS", "Context", "Operation", "StepTimeout", "operation"]
