"""templates/ci: valid for their CI (check-jsonschema's vendored schemas), every `ragops ...` command
in them parses against the real CLI, ragops is installed only from this project's own source pinned
to a commit or tag (the public index's `ragops` is an unrelated project), actions are pinned by
commit, every secret the shipped ragops.yaml references is passed on, and a missing input or grant
fails the first step at once. tests/integration/test_first_run.py runs their shell to the end."""
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
            line = line.replace('"${inputs[@]}"', "")              # optional runbook inputs: none
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


# ---- what they install, what they pass on, what they check first ---------------------------------

PINNED_INSTALL = 'pip install "ragops @ git+${RAGOPS_SOURCE}@${RAGOPS_REF}"'


def shell_lines(name: str) -> list[str]:
    return [line.strip() for script in scripts(yaml.safe_load((TEMPLATES / name).read_text()))
            for line in script.splitlines()]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_ragops_is_installed_only_from_this_projects_source_pinned(name):
    installs = [line for line in shell_lines(name) if re.search(r"\bpip3?\b.*\binstall\b", line)]
    assert installs, "no install step"
    assert set(installs) == {PINNED_INSTALL}, installs
    # the pin is checked before the install: a full commit or a release tag, never a branch
    text = (TEMPLATES / name).read_text()
    assert text.index("grep -Eqx '[0-9a-f]{40}|v[0-9]+\\.[0-9]+\\.[0-9]+'") < text.index(PINNED_INSTALL)
    anything = [line for line in shell_lines(name) if re.search(r"\b(pip3?|pipx|uv)\b", line)]
    assert anything == installs, "every pip call is the pinned install"


def test_actions_are_pinned_by_commit():
    workflow = yaml.safe_load((TEMPLATES / "github-actions.yml").read_text())
    uses = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", u) for u in uses), uses


def referenced_secrets(env_name: str) -> set[str]:
    from ragops.config import load_config

    config = load_config(REPO / "ragops.yaml", env_name)
    return {m.group(1) for _, ref in config.references() if (m := re.fullmatch(r"\$\{env:(\w+)\}", ref.strip()))}


@pytest.mark.parametrize("env_name", ["production", "staging"])
def test_every_secret_the_environment_references_is_passed_on(env_name):
    needed = referenced_secrets(env_name)
    assert needed >= {"RAG_API_KEYS"}, needed
    workflow = yaml.safe_load((TEMPLATES / "github-actions.yml").read_text())
    for job_name, job in workflow["jobs"].items():
        env = job.get("env") or {}
        for name in needed:
            assert env.get(name) == f"${{{{ secrets.{name} }}}}", (job_name, name)
    header = (TEMPLATES / "gitlab-ci.yml").read_text().split("\nstages:")[0]
    for name in needed:   # GitLab passes every CI/CD variable on: the header names each one to define
        assert re.search(rf"\b{name}\b", header), name


def test_the_shipped_environments_reference_the_secrets_the_templates_name():
    assert referenced_secrets("production") | referenced_secrets("staging") == {
        "PROD_DB_PASSWORD", "STAGING_DB_PASSWORD", "RAG_API_KEYS", "PROD_BACKUP_AGE_KEY", "STAGING_BACKUP_AGE_KEY"}


GOOD = {"RAGOPS_SOURCE": "https://git.example.com/ops/ragops.git", "RAGOPS_REF": "a" * 40, "VERSION": "v2",
        "RAGOPS_ACK_ON_CALL": "on-call", "RAGOPS_ACK_RUNBOOKS": "runbooks-accessible",
        "RAGOPS_APPROVE_COST": "cost-estimate", "RAGOPS_ACK_USER_FEEDBACK": "user-feedback",
        "RAGOPS_ACK_POST_MORTEM": "post-mortem"}


def first_step(name: str) -> str:
    if name == "github-actions.yml":
        return yaml.safe_load((TEMPLATES / name).read_text())["jobs"]["deploy"]["steps"][0]["run"]
    from tests.ci_runner import gitlab_script

    return gitlab_script("pre-deploy").split("\n- ")[0].split("\npip install")[0]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize(("change", "code", "says"), [
    ({}, 0, ""),
    ({"RAGOPS_ACK_ON_CALL": ""}, 5, "RAGOPS_ACK_ON_CALL is not set"),           # the empty --ack "" of the issue
    ({"RAGOPS_ACK_POST_MORTEM": ""}, 5, "RAGOPS_ACK_POST_MORTEM is not set"),   # post-deploy's, checked up front
    ({"RAGOPS_REF": "main"}, 2, "RAGOPS_REF must be a full 40-hex commit or a release tag"),
    ({"RAGOPS_REF": "v0.1.0"}, 0, ""),
    ({"RAGOPS_SOURCE": ""}, 2, "RAGOPS_SOURCE is not set"),
    ({"VERSION": ""}, 2, "is not a version label"),
])
def test_the_first_step_refuses_missing_inputs_and_grants_at_once(name, change, code, says):
    script = first_step(name)
    assert "ragops" not in re.sub(r"RAGOPS_\w+|ragops repository", "", script), "nothing runs before the checks"
    env = {"PATH": "/usr/bin:/bin", "RAGOPS_GRANTS": " ".join(k for k in GOOD if k.startswith("RAGOPS_A")),
           "RAGOPS_CHECK_VERSION": "1", **GOOD, **change}
    proc = subprocess.run(["bash", "-eo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == code, proc.stderr
    assert says in proc.stderr
