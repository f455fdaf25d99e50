"""The one registry of runbook operations, and what an operation receives.

An operation is a plain function registered with `@operation("name")`:

    @operation("backup.create")
    def backup_create(ctx: Context, *, label: str | None = None) -> dict:
        "Take a backup of the primary."
        return to_outputs(db_backup.create_backup(ctx.require_config(), label=label, progress=ctx.progress))

Its keyword-only parameters are the step's `with:` keys: validation matches a step's keys against
them (a parameter without a default is required), and the engine calls `fn(ctx, **with)`. It
returns an outputs dict; it raises GateFailed when a check did not pass (exit 3), NotApproved when
an approval is missing or denied (exit 5), anything else when the step broke (exit 1).
"""
from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragops.errors import ConfigError, RagopsError
from ragops.events import Event


class StepTimeout(RagopsError):
    """The step ran out of time."""


@dataclass
class Context:
    """What an operation sees besides its parameters: the config, its step, the expression
    context (inputs, earlier steps' outputs) and the engine (approvals, nested runs)."""
    config: Any
    step: Any
    context: dict
    engine: Any
    progress: Callable[[Event | str], None]   # takes engine events and plain lines alike
    deadline: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def remaining(self, default: float | None = None) -> float | None:
        if self.deadline is None:
            return default
        left = max(self.deadline - time.monotonic(), 0.0)
        return left if default is None else min(left, default)

    def sleep(self, seconds: float) -> None:
        """A sleep that stops early (with StepTimeout) when the step is cancelled or times out."""
        end = time.monotonic() + seconds
        while True:
            if self.cancelled.is_set():
                raise StepTimeout("cancelled")
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                raise StepTimeout("timed out while waiting")
            if now >= end:
                return
            self.cancelled.wait(min(0.2, end - now))

    def require_config(self):
        if self.config is None:
            raise ConfigError(f"action {self.step.action!r} needs a ragops.yaml (use --config)")
        return self.config


@dataclass
class Operation:
    name: str
    fn: Callable[..., dict]
    summary: str
    params: tuple[str, ...]              # the `with:` keys it takes
    required: tuple[str, ...]            # ... of which these have no default
    gate: bool = False                   # a failure is a failed gate (exit 3) by default
    raw: tuple[str, ...] = ()            # parameters kept as expressions (not rendered)
    interactive: str | None = None       # "approve" or "ack"

    def call(self, ctx: Context, params: dict) -> dict:
        return self.fn(ctx, **params)


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, *, gate: bool = False, raw: tuple[str, ...] = (), interactive: str | None = None):
    """Register `fn(ctx, *, param=default, ...)` as the runbook operation `name`."""
    def register(fn: Callable[..., dict]) -> Callable[..., dict]:
        if name in OPERATIONS:
            raise ValueError(f"runbook operation {name!r} is registered twice")
        params = list(inspect.signature(fn).parameters.values())[1:]     # after ctx
        for param in params:
            if param.kind is not param.KEYWORD_ONLY:
                raise TypeError(f"{fn.__qualname__}: parameter {param.name!r} must be keyword-only")
        OPERATIONS[name] = Operation(
            name=name, fn=fn, summary=(inspect.getdoc(fn) or "").split("\n")[0],
            params=tuple(p.name for p in params),
            required=tuple(p.name for p in params if p.default is p.empty),
            gate=gate, raw=raw, interactive=interactive)
        return fn
    return register
