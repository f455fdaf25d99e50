"""The application object every command receives: config, consoles, output mode, interactivity.

Data goes to stdout (a table on a terminal, JSON with --output json); status lines go to stderr.
Everything printed passes through the redactor, so a secret never reaches a terminal or a log.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragops.errors import NotApproved
from ragops.events import Progress
from ragops.secrets import redact, redact_data

if TYPE_CHECKING:
    from ragops.config import Config


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


class Env:
    def __init__(self, *, env_name: str | None, config_path: str | None, output: str,
                 verbosity: int, yes: bool, color: bool):
        from rich.console import Console

        self.env_name = env_name
        self.config_path = config_path
        self.output = output
        self.verbosity = verbosity
        self.yes = yes
        no_color = not color or bool(os.environ.get("NO_COLOR"))
        # piped output (CI logs, files) gets wide lines instead of rich's 80-column default,
        # so tables are not truncated with ellipses
        out_width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 160))
        err_width = None if sys.stderr.isatty() else int(os.environ.get("COLUMNS", 160))
        self.out = Console(no_color=no_color, highlight=False, soft_wrap=True, width=out_width)
        self.err = Console(stderr=True, no_color=no_color, highlight=False, soft_wrap=True, width=err_width)
        self._config: Config | None = None

    # ---- configuration -------------------------------------------------------------------
    @property
    def config(self) -> Config:
        if self._config is None:
            from ragops.config import find_config_path, load_config

            self._config = load_config(find_config_path(self.config_path), self.env_name)
        return self._config

    # ---- interactivity ---------------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty() and sys.stderr.isatty() and not os.environ.get("CI")

    @property
    def json(self) -> bool:
        return self.output == "json"

    def confirm(self, question: str, *, destructive: bool = True) -> None:
        """Ask on a terminal; without one, destructive steps need --yes. Raises NotApproved."""
        if self.yes:
            return
        if not self.interactive:
            if destructive:
                raise NotApproved(f"{question.rstrip('?')}: refusing without --yes (no terminal to ask on)")
            return
        from rich.prompt import Confirm

        if not Confirm.ask(question, console=self.err, default=False):
            raise NotApproved("not confirmed; nothing was changed")

    # ---- output ---------------------------------------------------------------------------
    def status(self, message: str, style: str | None = None) -> None:
        """A status line on stderr (hidden by -q)."""
        if self.verbosity >= 0:
            self.err.print(redact(message), style=style, markup=False)

    def print_json(self, data: Any) -> None:
        text = json.dumps(redact_data(to_jsonable(data)), indent=2, sort_keys=False, default=str)
        print(text, file=sys.stdout, flush=True)

    def emit(self, data: Any, render: Callable[[Any], Any] | None = None) -> None:
        """Print a command's result: JSON in --output json, else the renderer's rich object/text."""
        if self.json:
            self.print_json(data)
            return
        if render is None:
            self.print_json(data)
            return
        rendered = render(data)
        if rendered is None:
            return
        if isinstance(rendered, str):
            self.out.print(redact(rendered), markup=False, highlight=False)
        else:
            self.out.print(rendered)

    def progress(self, prefix: str) -> Progress:
        """The callback engines report events to: each becomes a status line on stderr (so JSON
        on stdout stays clean). str(event) is its message, so engines that still report plain
        strings print the same way."""
        return lambda event: self.status(f"{prefix}: {event}")
