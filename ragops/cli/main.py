"""The `ragops` entry point: the fast path, and the one place errors become exit codes.

It imports no typer: a command line that ragops.cli.fast_path takes (`ragops rollback`, the
3 a.m. command) runs without it; every other one goes to the typer application (ragops.cli.app).
"""
from __future__ import annotations

import sys

from ragops.cli.argv import command_name, hoist_global_options, verbosity
from ragops.cli.fast_path import take
from ragops.errors import ExitCode, RagopsError

__all__ = ["command_name", "hoist_global_options", "main"]


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

    argv = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    fast = take(argv)
    if fast is None:
        from ragops.cli.app import click_exception_types, run_app

        exit_types, abort_types, click_errors = click_exception_types()
    else:   # no typer on this path: none of click's exceptions can be raised
        exit_types, abort_types, click_errors = (), (), ()
    try:
        code = fast() if fast is not None else run_app(argv)
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
        if verbosity(argv) > 0:
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
