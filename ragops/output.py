"""The application object every command receives: config, consoles, output mode, interactivity.

Data goes to stdout (a table on a terminal, JSON with --output json); status lines go to stderr.
Everything printed passes through the redactor, so a secret never reaches a terminal or a log.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ragops.errors import NotApproved
from ragops.events import Progress
from ragops.journal import to_jsonable
from ragops.secrets import redact, redact_data

if TYPE_CHECKING:
    from ragops.config import Config


_EMOJI_LIKE = re.compile(r":\S+:")


def _print_plain(stream, text: str) -> bool:
    """Write `text` as rich would print it unstyled to a pipe or file, without importing rich
    (about a tenth of a short command's start-up). Only for what rich would print unchanged:
    not a terminal, printable characters, nothing like an :emoji: code. False: use rich."""
    try:
        if stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    if _EMOJI_LIKE.search(text) or not all(line.isprintable() for line in text.split("\n")):
        return False
    stream.write(text + "\n")
    stream.flush()
    return True


class Env:
    def __init__(self, *, env_name: str | None, config_path: str | None, output: str,
                 verbosity: int, yes: bool, color: bool):
        self.env_name = env_name
        self.config_path = config_path
        self.output = output
        self.verbosity = verbosity
        self.yes = yes
        self.no_color = not color or bool(os.environ.get("NO_COLOR"))
        # piped output (CI logs, files) gets wide lines instead of rich's 80-column default,
        # so tables are not truncated with ellipses
        self.out_width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 160))
        self.err_width = None if sys.stderr.isatty() else int(os.environ.get("COLUMNS", 160))
        self._config: Config | None = None

    # ---- consoles: rich is imported on first use (a piped plain line never needs it) ----------
    @cached_property
    def out(self):
        from rich.console import Console

        return Console(no_color=self.no_color, highlight=False, soft_wrap=True, width=self.out_width)

    @cached_property
    def err(self):
        from rich.console import Console

        return Console(stderr=True, no_color=self.no_color, highlight=False, soft_wrap=True, width=self.err_width)

    # ---- configuration -------------------------------------------------------------------
    @property
    def config(self) -> Config:
        if self._config is None:
            from ragops.config import find_config_path
            from ragops.config_cache import load_cached
            from ragops.config_checks import check_state_dir

            self._config = load_cached(find_config_path(self.config_path), self.env_name)
            check_state_dir(self._config)
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
            text = redact(message)
            if style is not None or not _print_plain(sys.stderr, text):
                self.err.print(text, style=style, markup=False)

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
            text = redact(rendered)
            if not _print_plain(sys.stdout, text):
                self.out.print(text, markup=False, highlight=False)
        else:
            self.out.print(rendered)

    def progress(self, prefix: str) -> Progress:
        """The callback engines report events to: each becomes a status line on stderr (so JSON
        on stdout stays clean). str(event) is its message, so engines that still report plain
        strings print the same way."""
        return lambda event: self.status(f"{prefix}: {event}")
