"""Structured progress events: what engines report and the CLI renders.

An engine receives one callable, `progress: Progress`, and calls it with `Event`s:

    progress(Event("weights", "routing green 10%, blue 90%", {"weights": {"blue": 90, "green": 10}}))
    say(progress, "resuming d-20250101-120000-abcdef")       # a plain status line

`str(event)` is its human message, so a callback that only prints text (a status line on
stderr, a runbook step's progress) can take events unchanged; the deploy panel reads `data`.
Engines never import typer or rich; rendering is the CLI's business.

Kinds the deploy engine (ragops/deploy/engine.py) emits, with their data:

    phase     the journal moved to a new phase         {"phase": "smoke", "deploy_id": ...}
    weights   router weights about to be written       {"weights": {"green": 10, "blue": 90}}
    switch    the router confirmed those weights       {"weights": {...}, "ms": 12.0, "name", "ok", "detail"}
    analysis  a window starts, or one sample of it     {"color", "window_s", "max_error_rate", "max_p95_ms",
                                                        and per sample: "requests", "error_rate", "p95_ms",
                                                        "elapsed_s"}
    step      a journalled step finished (or a note)   {"name", "ok" (True/False/None), "detail",
                                                        "analysis": {...} for an analysis verdict}
    done      the deploy ended                         {"id", "result", "reason", "seconds"}
    status    a plain line (also what older engines, called through `say`, report)    {}
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


Progress = Callable[[Event], None]
"""The one progress callback type engines receive."""

# Engines that still report plain status lines (platforms, database, backups, DNS, failover) take a Say;
# the one definition, so that every module means the same callback.
Say = Callable[[str], None]
MaybeSay = Say | None


def quiet(_message: str) -> None:
    """The Say that says nothing (a default)."""


def say(progress: Progress | None, message: str) -> None:
    """Report a plain status line (a `status` event); a missing callback is fine."""
    if progress is not None:
        progress(Event("status", message))


def ignore(_event: Event) -> None:
    """The default callback: report nothing."""
