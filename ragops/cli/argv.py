"""The command line before any parser sees it: global options may come after the subcommand
(moved to the front), and which subcommand it is."""
from __future__ import annotations

# Global options are accepted before and after the subcommand: main() moves them to the front.
GLOBAL_WITH_VALUE = {"--env", "-e", "--config", "-c", "--output", "-o"}
GLOBAL_FLAGS = {"--verbose", "-v", "--quiet", "-q", "--yes", "-y", "--no-color"}


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
        elif arg in GLOBAL_FLAGS or (len(arg) > 2 and short_flags(arg)):
            hoisted.append(arg)
        else:
            rest.append(arg)
        index += 1
    return hoisted + rest


def short_flags(arg: str) -> bool:
    """`-v`, `-qy`, `-vvy`: one or more of the global one-letter flags together."""
    return len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= {"v", "q", "y"}


def verbosity(argv: list[str]) -> int:
    return sum(a.count("v") for a in argv if short_flags(a)) + argv.count("--verbose")
