"""Run the shell of templates/ci as their CI would, on this machine: GitHub Actions jobs (each `run:`
step with `bash -eo pipefail`, `${{ }}` expressions evaluated from given inputs/vars/secrets,
$GITHUB_ENV honoured, `uses:` steps left to the test) and GitLab CI jobs (before_script + script in
one `bash -e`, variables merged as GitLab does: project settings over the file's)."""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import REPO

TEMPLATES = REPO / "templates" / "ci"
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def load(name: str) -> dict:
    return yaml.safe_load((TEMPLATES / name).read_text())


def evaluate(expression: str, context: dict) -> str:
    """The small part of GitHub's expression language the template uses: `a.b.c || 'literal'`."""
    for term in (t.strip() for t in expression.split("||")):
        if term.startswith("'") and term.endswith("'"):
            value = term[1:-1]
        else:
            value = context
            for part in term.split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
        if value:
            return str(value)
    return ""


def substitute(text: str, context: dict) -> str:
    return EXPRESSION.sub(lambda m: evaluate(m.group(1), context), str(text))


@dataclass
class StepRun:
    name: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


@dataclass
class JobRun:
    steps: list[StepRun] = field(default_factory=list)

    @property
    def returncode(self) -> int:
        return self.steps[-1].returncode if self.steps else 0

    def timings(self) -> str:
        return ", ".join(f"{s.name} {s.seconds:.1f}s" for s in self.steps)

    def failed(self) -> str:
        last = self.steps[-1] if self.steps else None
        return "" if last is None else f"step {last.name!r} exited {last.returncode}:\n{last.stdout[-2000:]}\n{last.stderr[-4000:]}"


def run_github_job(job_name: str, *, context: dict, base_env: dict, cwd: Path, timeout: float = 600) -> JobRun:
    """Every `run:` step of the job in order, stopping at the first failure (as GitHub does)."""
    workflow = load("github-actions.yml")
    job = workflow["jobs"][job_name]
    runner_temp = cwd / ".runner-temp"
    runner_temp.mkdir(exist_ok=True)
    github_env = runner_temp / "github-env"
    github_env.write_text("")
    env = {**base_env, "RUNNER_TEMP": str(runner_temp), "GITHUB_ENV": str(github_env)}
    for scope in (workflow.get("env") or {}, job.get("env") or {}):
        env.update({k: substitute(v, context) for k, v in scope.items()})
    result = JobRun()
    for step in job["steps"]:
        if "run" not in step:
            continue
        step_env = {**env, **{k: substitute(v, context) for k, v in (step.get("env") or {}).items()}}
        for line in github_env.read_text().splitlines():   # what earlier steps exported
            key, _, value = line.partition("=")
            step_env[key] = value
        started = time.monotonic()
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", substitute(step["run"], context)],
                              cwd=cwd, env=step_env, capture_output=True, text=True, timeout=timeout)
        result.steps.append(StepRun(step.get("name", step["run"][:40]), proc.returncode, proc.stdout, proc.stderr,
                                    time.monotonic() - started))
        if proc.returncode != 0:
            break
    return result


def gitlab_script(job_name: str) -> str:
    pipeline = load("gitlab-ci.yml")
    job = pipeline[job_name]
    before = job.get("before_script", pipeline["default"]["before_script"])
    return "\n".join(list(before) + list(job["script"]))


def gitlab_env(job_name: str, settings: dict, base_env: dict) -> dict:
    """The file's variables (global, then the job's, `${NAME}` expanded), then the project's settings,
    which take precedence over both in GitLab."""
    pipeline = load("gitlab-ci.yml")
    env = dict(base_env)
    for scope in (pipeline.get("variables") or {}, pipeline[job_name].get("variables") or {}):
        for key, value in scope.items():
            env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: {**env, **settings}.get(m.group(1), ""), str(value))
    env.update(settings)
    return env


def run_gitlab_job(job_name: str, *, settings: dict, base_env: dict, cwd: Path, timeout: float = 600) -> JobRun:
    started = time.monotonic()
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", gitlab_script(job_name)],
                          cwd=cwd, env=gitlab_env(job_name, settings, base_env), capture_output=True, text=True,
                          timeout=timeout)
    return JobRun([StepRun(job_name, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)])
