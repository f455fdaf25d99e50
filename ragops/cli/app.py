"""The typer application: the global options, `version`, and the command modules registered on
demand (only the ones the command line needs). ragops.cli.main runs it, unless the command has a
fast path that needs no typer (ragops.cli.fast_path)."""
from __future__ import annotations

import importlib
import sys

import typer

HELP = """Operate the bundled RAG service: deploy, back up, fail over, run the checklists.

\b
Examples:
  ragops up                          start the local stack (PostgreSQL, router, service)
  ragops status --output json        everything ragops knows about the environment
  ragops deploy --version v2 --yes   blue-green deploy with smoke, analysis, auto-rollback
  ragops -e staging deploy --version v2 --strategy canary

\b
Exit codes: 0 ok, 1 failed, 2 usage/config error, 3 gate failed, 4 lock held,
            5 approval denied or missing, 130 interrupted.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_enable=False, rich_markup_mode=None)

# Command modules, each with a `register(app)` function. Imported at start-up, so they must keep
# heavy SDK imports inside their command bodies.
COMMAND_MODULES = [
    "ragops.cli.init_cmd",
    "ragops.cli.config_cmd",
    "ragops.cli.stack",
    "ragops.cli.db",
    "ragops.cli.deploy",
    "ragops.cli.backup",
    "ragops.cli.dns",
    "ragops.cli.failover",
    "ragops.cli.runbook",
    "ragops.cli.build",
    "ragops.cli.render",
    "ragops.cli.audit",
]

# The top-level commands each module registers. A command runs after importing only its own module,
# so typer converts only those functions (measured: building every command was ~0.15 CPU-s of each
# run); `ragops`, `--help` and an unknown name load them all, so help lists everything. A module in
# COMMAND_MODULES but not here is loaded every time. tests/unit/test_cli_lazy.py checks this table.
COMMANDS_OF = {
    "ragops.cli.init_cmd": ("init",),
    "ragops.cli.config_cmd": ("config",),
    "ragops.cli.stack": ("up", "status", "down", "logs"),
    "ragops.cli.db": ("db",),
    "ragops.cli.deploy": ("deploy", "rollback", "promote", "abort", "history", "smoke", "lock"),
    "ragops.cli.backup": ("backup",),
    "ragops.cli.dns": ("dns",),
    "ragops.cli.failover": ("failover",),
    "ragops.cli.runbook": ("runbook", "drill"),
    "ragops.cli.build": ("build",),
    "ragops.cli.render": ("render",),
    "ragops.cli.audit": ("audit",),
}


@app.callback()
def root(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", "-e", help="Environment (default: RAGOPS_ENV, else the config's default_env)."),
    config: str | None = typer.Option(None, "--config", "-c", help="Config file (default: RAGOPS_CONFIG, else ./ragops.yaml)."),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail; -v shows tracebacks of unexpected errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results and errors."),
    yes: bool = typer.Option(False, "--yes", "-y",
                             help="Assume yes for confirmations (required for destructive steps without a terminal)."),
    no_color: bool = typer.Option(False, "--no-color", help="No colors (NO_COLOR is honoured too)."),
) -> None:
    from ragops.output import Env

    if output in ("sarif", "junit") and ctx.invoked_subcommand != "audit":
        raise typer.BadParameter(f"{output} is for ragops audit only; expected text or json", param_hint="--output")
    if output not in ("text", "json", "sarif", "junit"):
        raise typer.BadParameter(f"expected text or json, got {output!r}", param_hint="--output")
    if quiet and verbose:
        raise typer.BadParameter("give one of them: --quiet (only results and errors) contradicts --verbose",
                                 param_hint="--verbose/--quiet")
    ctx.obj = Env(env_name=env, config_path=config, output=output,
                  verbosity=-1 if quiet else verbose, yes=yes, color=not no_color)


@app.command("version")
def version(ctx: typer.Context) -> None:
    """Print the ragops version."""
    from ragops import __version__

    env = ctx.obj
    env.emit({"ragops": __version__, "python": sys.version.split()[0]},
             lambda d: f"ragops {d['ragops']} (python {d['python']})")


_REGISTERED: set[str] = set()   # once per process: main() called again (tests) must not stack copies


def register_commands(command: str | None = None) -> None:
    """Register the modules `command` needs (every module when it is None or not in COMMANDS_OF)."""
    wanted = [m for m, names in COMMANDS_OF.items() if command in names]
    for name in COMMAND_MODULES:
        if (wanted and name in COMMANDS_OF and name not in wanted) or name in _REGISTERED:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a verb group not built yet
                continue
            raise
        module.register(app)
        _REGISTERED.add(name)


def click_exception_types() -> tuple[tuple, tuple, tuple]:
    """Typer >= 0.22 vendors click as typer._click; older releases use click itself."""
    exits, aborts, errors = [typer.Exit], [typer.Abort], []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        exits += [getattr(module, "Exit", typer.Exit)]
        aborts += [getattr(module, "Abort", typer.Abort)]
        errors += [module.ClickException]
        break   # the click typer runs on: importing the other one too cost start-up time for nothing
    return tuple(set(exits)), tuple(set(aborts)), tuple(set(errors))



def run_app(argv: list[str]) -> int:
    """Register what `argv` needs and run it; the exit code (click's exceptions propagate)."""
    from ragops.cli.argv import command_name
    from ragops.errors import ExitCode

    register_commands(command_name(argv))
    # standalone_mode=False makes click *return* an Exit's code (Typer turns Ctrl-C into Exit(130))
    returned = app(args=argv, prog_name="ragops", standalone_mode=False)
    return returned if isinstance(returned, int) and not isinstance(returned, bool) else ExitCode.OK
