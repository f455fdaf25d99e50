"""Commands: `shell` and the configured security scan."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from ragops.errors import GateFailed, OperationFailed
from ragops.resources import script_environment
from ragops.runbook.operations.common import truncate, with_outputs
from ragops.runbook.operations.registry import Context, StepTimeout, operation


@operation("shell")
def shell(ctx: Context, *, command: str | list, cwd: str | None = None, env: dict | None = None,
          expect_exit: int = 0) -> dict:
    """Run a command; fails when it exits non-zero (or not with expect_exit).

    command: a string (run by /bin/sh) or a list of arguments; env: extra environment variables.
    """
    as_shell = isinstance(command, str)
    environment = {**script_environment(), **os.environ}   # $RAGOPS_SCRIPTS, $RAGOPS_PYTHON unless set
    environment.update({str(k): str(v) for k, v in (env or {}).items()})
    cwd = cwd or (str(ctx.config.base_dir) if ctx.config is not None else None)
    started = time.monotonic()
    proc = subprocess.Popen(command if as_shell else [str(a) for a in command], shell=as_shell, cwd=cwd,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=ctx.remaining())
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise StepTimeout(f"command still running after {time.monotonic() - started:.1f}s; killed it") from None
    except BaseException:
        _kill_group(proc)
        raise
    outputs = {"exit_code": proc.returncode, "stdout": truncate(stdout.strip()), "stderr": truncate(stderr.strip())}
    expected = int(expect_exit)
    if proc.returncode != expected:
        detail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or [""]
        raise with_outputs(OperationFailed(f"command exited {proc.returncode} (expected {expected}): "
                                           f"{detail[0][:300]}"), outputs)
    return outputs


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the command we started and its children (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@operation("security.scan", gate=True)
def security_scan(ctx: Context, *, command: str | None = None) -> dict:
    """Run the configured security scan (runbooks.security_scan); unset fails in strict mode.

    command: overrides the configured one.
    """
    config = ctx.config
    command = command or (config.env.runbooks.security_scan if config is not None else None)
    if not command:
        strict = config.env.runbooks.strict if config is not None else True
        if strict:
            raise GateFailed("security scan is not configured (runbooks.security_scan); "
                             "in strict mode 'not configured' is a failure, not a pass")
        ctx.progress("security scan not configured; skipped (runbooks.strict is off)")
        return {"configured": False, "passed": None}
    try:
        outputs = shell(ctx, command=command)
    except OperationFailed as exc:
        raise with_outputs(GateFailed(f"security scan failed: {exc.message}"), getattr(exc, "outputs", {})) from None
    return {"configured": True, "passed": True, **outputs}
