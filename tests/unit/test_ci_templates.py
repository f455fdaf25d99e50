"""templates/ci: valid for their CI (check-jsonschema's vendored schemas), and every `ragops ...`
command in them parses against the real CLI (options, arguments, subcommands)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import typer
import yaml

from tests.conftest import REPO

TEMPLATES = REPO / "templates" / "ci"
SCHEMAS = {"github-actions.yml": "vendor.github-workflows", "gitlab-ci.yml": "vendor.gitlab-ci"}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_template_passes_the_vendored_ci_schema(name):
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMAS[name],
                           str(TEMPLATES / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def scripts(node) -> list[str]:
    """Every shell line of a GitHub `run:` or GitLab `script:` in the document."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script", "before_script", "after_script"):
                found += [value] if isinstance(value, str) else [str(v) for v in value]
            else:
                found += scripts(value)
    elif isinstance(node, list):
        for item in node:
            found += scripts(item)
    return found


def ragops_commands(name: str) -> list[list[str]]:
    commands = []
    for script in scripts(yaml.safe_load((TEMPLATES / name).read_text())):
        for line in script.splitlines():
            line = re.sub(r"\$\{\{[^}]*\}\}", "X", line)          # ${{ vars.X }} -> a value
            line = re.sub(r"\$\{?\w+\}?", "X", line)               # $VERSION, ${VERSION}
            words = shlex.split(line.split(" > ")[0].split(" | ")[0])
            if words and words[0] == "ragops":
                commands.append(words[1:])
    return commands


def parse(args: list[str]) -> list[str]:
    """Parse like the real CLI (main() hoists the global options, then click parses each level down
    to the leaf command); the command path, or the CLI's usage error."""
    from ragops.cli import app, main

    app.register_commands()
    args = main.hoist_global_options(list(args))
    command = typer.main.get_command(app.app)
    path: list[str] = []
    ctx = None
    while True:
        ctx = command.make_context(" ".join(["ragops", *path]), list(args), parent=ctx)
        if not hasattr(command, "resolve_command"):     # a leaf command: its options parsed
            return path
        rest = ctx._protected_args + ctx.args
        name, command, args = command.resolve_command(ctx, rest)
        path.append(name)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_ragops_line_is_a_valid_command(name):
    commands = ragops_commands(name)
    paths = [" ".join(parse(args)) for args in commands]
    assert {"runbook run", "deploy", "drill run"} <= set(paths), paths


def test_an_invalid_option_would_be_caught():
    from ragops.cli.app import click_exception_types as _click_exception_types

    usage_errors = _click_exception_types()[2]
    parse(["deploy", "--version", "v2", "--strategy", "canary"])
    with pytest.raises(usage_errors):
        parse(["deploy", "--version", "v2", "--no-such-option"])
    with pytest.raises(usage_errors):
        parse(["runbook", "launch", "pre-deploy"])
