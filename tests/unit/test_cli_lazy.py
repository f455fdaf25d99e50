"""Lazy CLI start-up: a command imports (and typer converts) only its own module; help lists all."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import typer

from ragops.cli import app as cli_app
from ragops.cli import main as cli_main


def registered(module_name: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(module_name).register(app)
    return {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}


def test_the_lazy_table_names_exactly_what_each_module_registers():
    assert set(cli_app.COMMANDS_OF) <= set(cli_app.COMMAND_MODULES)
    for module_name, names in cli_app.COMMANDS_OF.items():
        assert registered(module_name) == set(names), module_name
    every = [n for names in cli_app.COMMANDS_OF.values() for n in names]
    assert len(every) == len(set(every)), "a command name in two modules"


def test_command_name_skips_global_options_and_their_values():
    assert cli_main.command_name(["-c", "x.yaml", "-q", "rollback", "--yes"]) == "rollback"
    assert cli_main.command_name(["--output=json", "-vv", "status"]) == "status"
    assert cli_main.command_name(["-e", "staging", "--env", "prod", "db", "promote"]) == "db"
    assert cli_main.command_name(["--help"]) is None and cli_main.command_name([]) is None


CORE = {"ragops.cli.main", "ragops.cli.argv", "ragops.cli.fast_path", "ragops.cli.app"}


def run(*args: str) -> tuple[list[str], str]:
    code = ("import sys, contextlib, io\nfrom ragops.cli.main import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    try: main({list(args)!r})\n"
            "    except SystemExit: pass\n"
            "print('MODULES', sorted(m for m in sys.modules if m.startswith('ragops.cli.')))\n"
            "print(out.getvalue())")
    stdout = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, _, rest = stdout.partition("\n")
    return ast.literal_eval(first.removeprefix("MODULES ")), rest


def test_a_command_loads_only_its_module_and_help_still_lists_every_command():
    loaded, text = run("rollback", "--help")
    assert "Usage: ragops rollback" in text
    assert [m for m in loaded if m not in CORE] == ["ragops.cli.deploy"]
    loaded, text = run("--help")
    assert set(cli_app.COMMAND_MODULES) <= set(loaded)
    listed = {line.split()[0] for line in text.splitlines() if line.startswith("  ") and line.split()}
    for names in cli_app.COMMANDS_OF.values():
        assert set(names) <= listed, names
