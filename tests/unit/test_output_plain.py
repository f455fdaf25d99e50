"""Piped plain lines are printed without importing rich, exactly as rich printed them."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from ragops.output import Env, _print_plain


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize("text", [
    "backup 20261129T193847.435Z: 9.7 KB dumped, 2.6 KB stored, sha256 b4b1d2c6..., 0.4s",
    "", "two\nlines\n", "  padded  ", "ünïcode ✓ 日本語 " * 30, "[bold]not markup[/bold]",
    "tab\there", "an :warning: code", "bell \a and \r",
])
def test_a_piped_line_is_what_rich_prints(text):
    from rich.console import Console

    expected = Pipe()
    Console(file=expected, highlight=False, soft_wrap=True, width=160).print(text, markup=False, highlight=False)
    ours = Pipe()
    if not _print_plain(ours, text):          # not plain: rich prints it (tabs, control codes, emoji)
        Console(file=ours, highlight=False, soft_wrap=True, width=160).print(text, markup=False, highlight=False)
    assert ours.getvalue() == expected.getvalue()


def test_a_terminal_always_goes_through_rich():
    class Tty(Pipe):
        def isatty(self) -> bool:
            return True
    assert _print_plain(Tty(), "x") is False


def test_a_piped_result_and_status_line_do_not_import_rich():
    code = ("import sys; from ragops.output import Env; "
            "e = Env(env_name=None, config_path=None, output='table', verbosity=0, yes=False, color=True); "
            "e.status('stage: 1.2 MB'); e.emit({'a': 1}, render=lambda d: 'result ' + str(d['a'])); "
            "print('rich' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "result 1\n"
    assert done.stderr == "stage: 1.2 MB\nFalse\n"


def test_a_styled_status_still_uses_rich(capsys):
    env = Env(env_name=None, config_path=None, output="table", verbosity=0, yes=False, color=False)
    env.status("warning: slow", style="yellow")
    assert capsys.readouterr().err == "warning: slow\n"
