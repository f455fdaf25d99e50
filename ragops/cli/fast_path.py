"""Command lines that run without typer: `ragops rollback`, the command run when something is
already wrong, where every 100 ms before the router flips is 100 ms more of users on a bad version.

typer and click cost about 55 ms of start-up to parse two options (measured with -X importtime),
so `take()` recognises the rollback command line itself: the global options and `--to V`,
`--resume`. Anything else in it (--help, an unknown or malformed option, a value for --output that
is neither text nor json) returns None, and the typer application parses the whole line as
always: its help and its error messages stay the only ones. Both paths run `rollback()` below:
the typer command in ragops.cli.deploy is this function behind typer's options.
"""
from __future__ import annotations

from collections.abc import Callable

from ragops.cli.argv import GLOBAL_WITH_VALUE, command_name, short_flags


def take(argv: list[str]) -> Callable[[], int] | None:
    """A function running `argv` without typer, or None when the typer application must parse it."""
    if command_name(argv) != "rollback":
        return None
    parsed = _parse_rollback(argv)
    if parsed is None:
        return None
    env, to, resume = parsed

    def run() -> int:
        rollback(env, to, resume)
        return 0
    return run


def _parse_rollback(argv: list[str]):
    """(Env, --to, --resume) from `[global options] rollback [--to V] [--resume]`, or None."""
    from ragops.output import Env

    values: dict[str, str] = {}
    counts = {"v": 0, "q": 0, "y": 0, "no-color": 0, "resume": 0}
    short = {"-e": "env", "-c": "config", "-o": "output"}
    index, seen_command = 0, False
    while index < len(argv):
        arg = argv[index]
        name, has_value, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if not seen_command and arg == "rollback":
            seen_command = True
        elif name in GLOBAL_WITH_VALUE or (seen_command and name == "--to"):
            if not has_value:
                if index + 1 >= len(argv):
                    return None
                index += 1
                value = argv[index]
            values[short.get(name, name.lstrip("-"))] = value
        elif arg in ("--verbose", "--quiet", "--yes", "--no-color") or (seen_command and arg == "--resume"):
            counts[{"--verbose": "v", "--quiet": "q", "--yes": "y"}.get(arg, arg.lstrip("-"))] += 1
        elif short_flags(arg):
            for letter in arg[1:]:
                counts[letter] += 1
        else:
            return None     # --help, --, an option of another command, a stray argument: typer decides
        index += 1
    if values.get("output", "text") not in ("text", "json") or (counts["q"] and counts["v"]):
        return None     # typer's own error message (-v with -q is refused there)
    env = Env(env_name=values.get("env"), config_path=values.get("config"), output=values.get("output", "text"),
              verbosity=-1 if counts["q"] else counts["v"], yes=bool(counts["y"]), color=not counts["no-color"])
    return env, values.get("to"), bool(counts["resume"])


def rollback(env, to: str | None, resume: bool) -> None:
    """`ragops rollback [--to V] [--resume]` (its help: ragops.cli.deploy.rollback)."""
    from ragops.deploy import engine

    if resume:
        if engine.resumable(env.config) is None:
            from ragops.errors import UsageError

            raise UsageError(f"nothing to resume: no deploy or rollback is interrupted in {env.config.env_name}")
        env.confirm(f"Resume the interrupted rollback in {env.config.env_name}?", destructive=True)
        env.emit(engine.resume(env.config, progress=env.progress("rollback")), render_result)
        return
    if to is not None:
        from ragops.settings.labels import check_version_label

        check_version_label(to, "--to")
    env.confirm(f"Roll back {env.config.env_name}" + (f" to {to}" if to else "") + "?", destructive=True)
    result = engine.rollback(env.config, to, progress=env.progress("rollback"))
    env.emit(result, render_result)


def render_result(r) -> str:
    """A deploy's, rollback's, promotion's or abort's result, as the text output shows it."""
    lines = [f"deploy {r.id}: {r.strategy} {r.from_version or '-'} -> {r.version}: {r.result.upper()}"
             + (f" in {r.seconds:.1f}s" if r.seconds else "")]
    if r.reason:
        lines.append(f"reason: {r.reason}")
    if r.switch_ms is not None:
        lines.append(f"last router change confirmed in {r.switch_ms:.0f}ms")
    if r.result == "paused":
        lines.append("paused: `ragops promote` continues, `ragops abort` undoes")
    return "\n".join(lines)
