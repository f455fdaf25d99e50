"""The `ragops` entry point: global options, command registration, and the one place errors
become exit codes."""
from __future__ import annotations

import importlib
import sys

import typer

from ragops.errors import ExitCode, RagopsError

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
]

# The top-level commands each module registers. A command runs after importing only its own module,
# so typer converts only those functions (measured: building every command was ~0.15 CPU-s of each
# run); `ragops`, `--help` and an unknown name load them all, so help lists everything. A module in
# COMMAND_MODULES but not here is loaded every time. tests/unit/test_cli_lazy.py checks this table.
COMMANDS_OF = {
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
}

# Global options are accepted before and after the subcommand: main() moves them to the front.
GLOBAL_WITH_VALUE = {"--env", "-e", "--config", "-c", "--output", "-o"}
GLOBAL_FLAGS = {"--verbose", "-v", "--quiet", "-q", "--yes", "-y", "--no-color"}


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

    if output not in ("text", "json"):
        raise typer.BadParameter(f"expected text or json, got {output!r}", param_hint="--output")
    ctx.obj = Env(env_name=env, config_path=config, output=output,
                  verbosity=-1 if quiet else verbose, yes=yes, color=not no_color)


@app.command("version")
def version(ctx: typer.Context) -> None:
    """Print the ragops version."""
    from ragops import __version__

    env = ctx.obj
    env.emit({"ragops": __version__, "python": sys.version.split()[0]},
             lambda d: f"ragops {d['ragops']} (python {d['python']})")


def command_name(argv: list[str]) -> str | None:
    """The subcommand in `argv` after hoist_global_options (None when there is none)."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.split("=", 1)[0] in GLOBAL_WITH_VALUE:
            index += 1 if "=" in arg else 2
        elif arg.startswith("-"):
            index += 1
        else:
            return arg
    return None


def _register_commands(command: str | None = None) -> None:
    """Register the modules `command` needs (every module when it is None or not in COMMANDS_OF)."""
    wanted = [m for m, names in COMMANDS_OF.items() if command in names]
    for name in COMMAND_MODULES:
        if wanted and name in COMMANDS_OF and name not in wanted:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a verb group not built yet
                continue
            raise
        module.register(app)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front, so both orders work."""
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_WITH_VALUE:
            if "=" in arg:
                hoisted.append(arg)
            elif index + 1 < len(argv):
                hoisted.extend(argv[index:index + 2])
                index += 1
            else:
                rest.append(arg)
        elif arg in GLOBAL_FLAGS or (arg.startswith("-") and not arg.startswith("--")
                                     and len(arg) > 2 and set(arg[1:]) <= {"v", "q", "y"}):
            hoisted.append(arg)
        else:
            rest.append(arg)
        index += 1
    return hoisted + rest


def _click_exception_types() -> tuple[tuple, tuple, tuple]:
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


def _verbosity(argv: list[str]) -> int:
    return sum(a.count("v") for a in argv if a.startswith("-") and not a.startswith("--") and set(a[1:]) <= {"v", "q", "y"}) \
        + argv.count("--verbose")


def _interrupted() -> None:
    print("interrupted: the command stopped part-way; nothing more will be changed.", file=sys.stderr)
    print("hint: ragops status shows what is live now; an interrupted deploy continues with "
          "'ragops deploy --resume' or is undone with 'ragops abort'", file=sys.stderr)


def _usage_error(exc) -> None:
    """One `error:` line and a hint, instead of click's usage block."""
    from ragops.secrets import redact

    if type(exc).__name__ == "NoArgsIsHelpError":   # `ragops backup` alone: the group's help is the answer
        print(exc.format_message(), file=sys.stderr)
        return
    message = exc.format_message().rstrip(".")
    print(f"error: {redact(message[:1].lower() + message[1:])}", file=sys.stderr)
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None and ctx.command_path else "ragops"
    print(f"hint: {path} --help", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, as a console script, exit with) the exit code."""
    from ragops.secrets import redact

    exit_types, abort_types, click_errors = _click_exception_types()

    argv = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    _register_commands(command_name(argv))
    try:
        # standalone_mode=False makes click *return* an Exit's code (Typer turns Ctrl-C into Exit(130))
        returned = app(args=argv, prog_name="ragops", standalone_mode=False)
        code = returned if isinstance(returned, int) and not isinstance(returned, bool) else ExitCode.OK
        if code == ExitCode.INTERRUPTED:
            _interrupted()
    except RagopsError as exc:
        print(f"error: {redact(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {redact(exc.hint)}", file=sys.stderr)
        code = exc.exit_code
    except exit_types as exc:
        code = exc.exit_code
    except (*abort_types, KeyboardInterrupt):
        _interrupted()
        code = ExitCode.INTERRUPTED
    except click_errors as exc:
        _usage_error(exc)
        code = ExitCode.USAGE
    except Exception as exc:  # noqa: BLE001 - an unexpected failure: one line, traceback only with -v
        if _verbosity(argv) > 0:
            import traceback

            print(redact(traceback.format_exc()), file=sys.stderr)
        print(f"error: unexpected {type(exc).__name__}: {redact(str(exc))} (run with -v for the traceback)",
              file=sys.stderr)
        code = ExitCode.FAILED
    sys.stdout.flush()
    return int(code)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
