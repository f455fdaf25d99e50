"""`ragops up | status | down | logs`."""
from __future__ import annotations

import re
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import typer


@dataclass
class UpResult:
    environment: str
    router: str
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("status")(status)
    app.command("down")(down)
    app.command("logs")(logs)


def up(ctx: typer.Context,
       dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be started; change nothing.")) -> None:
    """Start the environment: PostgreSQL primary + replica, migrations, router, first color.

    Idempotent: on a running stack it checks every piece and changes nothing.

    Example: ragops up && ragops status
    """
    env = ctx.obj
    config = env.config
    from ragops.platforms import get_platform

    if dry_run:   # the environment's platform plans its own `up`, from the config alone
        platform = get_platform(config)
        env.emit({"platform": platform.name, "plan": platform.plan_up(), "state_dir": str(config.state_dir)},
                 lambda d: "\n".join([f"would do ({d['platform']}):"] + [f"  - {s}" for s in d["plan"]]))
        return

    start = time.monotonic()
    platform = get_platform(config)
    result = UpResult(environment=config.env_name, router=platform.router_url())
    result.steps = platform.up(env.progress("up"))
    result.seconds = round(time.monotonic() - start, 2)
    env.emit(result, lambda r: f"{r.environment} is up: {r.router} ({len(r.steps)} changes, {r.seconds:.1f}s)"
             if r.steps else f"{r.environment} is already up: {r.router}")


def down(ctx: typer.Context,
         purge: bool = typer.Option(False, "--purge", help="Also delete the state directory (data, logs, journals, "
                                    "secrets); backups and their key are kept."),
         purge_backups: bool = typer.Option(False, "--purge-backups", help="With --purge: also delete the file:// "
                                            "backups and the generated backup key."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be deleted and kept; change nothing."),
         force: bool = typer.Option(False, "--force", help="Stop even while another command (a deploy, a switchover) "
                                    "holds the operations lock; that command then fails.")) -> None:
    """Stop everything cleanly (data kept). With --purge, delete the state directory too; backups
    are deleted only when asked for by name (--purge-backups). While a deploy or another command
    that changes the environment runs, down refuses (exit 4, naming it) unless --force.

    Example: ragops down

    Example: ragops down --purge --dry-run

    Example: ragops down --purge --yes

    Example: ragops down --force   # even while a deploy runs (it then fails)
    """
    env = ctx.obj
    config = env.config
    from ragops.errors import UsageError
    from ragops.platforms import get_platform

    if purge_backups and not purge:
        raise UsageError("--purge-backups: only together with --purge")
    platform = get_platform(config)
    plan = _purge_plan(config, platform, purge_backups) if purge else {"delete": [], "keep": []}
    if dry_run:
        env.emit({"environment": config.env_name, "stop": "every color, router and database node", **plan},
                 lambda d: "\n".join([f"would stop {d['stop']} of {d['environment']}"]
                                     + [f"would delete {p}" for p in d["delete"]]
                                     + [f"would keep {p}" for p in d["keep"]]))
        return
    if purge:
        for path in plan["keep"]:
            env.status(f"keeping {path} (backups are deleted only with --purge-backups)")
        env.confirm(f"Delete {', '.join(plan['delete']) or 'nothing'} of {config.env_name}?")
    from ragops.deploy.oplock import operation

    with operation(config, "ragops down", force=force, past_dormant=True, platform=platform,
                   progress=env.progress("down")):
        steps = platform.down(purge=purge, progress=env.progress("down"))
    if purge_backups:
        from ragops.purge import purge_backups as delete_backups

        steps += delete_backups(config)
    env.emit({"environment": config.env_name, "steps": steps}, _render_down)


def _purge_plan(config, platform, purge_backups: bool) -> dict:
    from ragops.purge import purge_plan

    home = None
    if platform.owns_database_files:
        from ragops.db.pgctl import server_home

        home = server_home(config)   # as root: the PostgreSQL account's data, logs and binaries
    return purge_plan(config, purge_backups=purge_backups, server_home=home)


def _render_down(d: dict) -> str:
    """Count what was stopped; deletions are said apart (a purge of a stopped stack stopped nothing)."""
    kept_apart = ("remove network ", "remove volume ")   # docker: removing a container stops it; these stop nothing
    stopped = [s for s in d["steps"] if s.startswith("stop ") or (s.startswith("remove ") and not s.startswith(kept_apart))]
    deleted = [s.removeprefix("delete ").removeprefix("remove ") for s in d["steps"]
               if s.startswith(("delete ", "remove volume "))]
    text = f"{d['environment']} is down" + (f" ({len(stopped)} stopped)" if stopped else " (nothing was running)")
    return text + (f"; deleted {', '.join(deleted)}" if deleted else "")


def status(ctx: typer.Context,
           explain: bool = typer.Option(False, "--explain", help="Explain the last deploy's outcome step by step.")) -> None:
    """Router weights, each color's version/pid/health, database roles and lag, the deploy lock.

    Example: ragops status --output json
    """
    env = ctx.obj
    from ragops.status import status as environment_status

    data = environment_status(env.config)
    if explain:
        from ragops.deploy.history import explain as explain_deploy

        data["explain"] = explain_deploy(data.get("last_deploy"))
    env.emit(data, _render_status)


def _render_status(data: dict):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    router = data["router"]
    weights = ", ".join(f"{c} {w}%" for c, w in sorted(router["weights"].items())) or "no traffic"
    head = Text(f"{data['environment']} ({data['platform']})  router {router['address']}  "
                f"{'running' if router['running'] else 'STOPPED'}  weights: {weights}"
                + ("  MAINTENANCE" if router.get("maintenance") else ""))
    colors = Table("color", "version", "weight", "pid", "port", "healthy", "ready", "deploy", box=None)
    for c in data["colors"]:
        colors.add_row(c.color, c.version or "-", f"{c.weight}%", str(c.pid or "-"), str(c.port or "-"),
                       _yn(c.healthy) if c.running else "stopped", _yn(c.ready) if c.running else "-",
                       c.deploy_id or "-")
    db = Table("node", "address", "role", "lag bytes", "lag s", box=None)
    for n in data["database"]:
        db.add_row(n["name"], f"{n['host']}:{n['port']}", n["role"], _num(n.get("lag_bytes")), _num(n.get("lag_seconds")))
    parts: list[Any] = [head, colors, db]   # rich renderables
    if data.get("ha"):
        ha, dcs = data["ha"], data["ha"]["dcs"]
        members = ", ".join(f"{m['name']} {m['role']}/{m['state']}" for m in ha["members"]) or "no member answers"
        parts.append(Text(f"Patroni: leader {ha['leader'] or 'NONE'}{' (paused)' if ha['paused'] else ''}; "
                          f"{members}; etcd {dcs['healthy']}/{len(dcs['members'])} healthy"
                          + ("" if dcs["quorum"] else " (NO QUORUM)")))
    lock = data.get("lock")
    if lock:
        from ragops.deploy.lock import describe

        parts.append(Text(f"deploy lock: held by {describe(lock)}"
                          + ("  STALE (owner gone or lease expired)" if data.get("lock_stale") else "")))
    else:
        parts.append(Text("deploy lock: free"))
    last, unfinished = data.get("last_deploy") or {}, data.get("deploy")
    if unfinished:
        change = unfinished.get("interrupted_change")
        parts.append(Text(f"last deploy: {last.get('version')} {last.get('strategy')} -> "
                          f"{'paused' if unfinished['phase'] == 'paused' else 'in progress'} "
                          f"(phase {unfinished['phase']}" + (f", interrupted during a {change} change" if change else "")
                          + ")"))
        parts.append(Text(f"next: {unfinished['hint']}"))
    elif last:
        parts.append(Text(f"last deploy: {last.get('version')} {last.get('strategy')} -> {last.get('result')}"
                          + (f" ({last.get('reason')})" if last.get("reason") else "")))
    if data.get("supervisor"):
        parts.append(Text(_supervisor_line(data["supervisor"])))
    if data.get("explain"):
        parts.append(Text("\n".join(data["explain"])))
    return Group(*parts)


def _supervisor_line(sup: dict) -> str:
    """Whether it runs, and per component: down now (since when) or its last outage and restarts."""
    seen = []
    for name, c in sorted(sup.get("components", {}).items()):
        if c.get("down_since"):
            seen.append(f"{name} DOWN since {c['down_since'][11:19]}"
                        + (f" ({c['last_error']})" if c.get("last_error") else ""))
        elif c.get("restarts"):
            seen.append(f"{name} was down {c.get('last_outage_s')}s, restarted at {(c.get('last_restart') or '')[11:19]}"
                        f" ({c['restarts']} restart{'s' if c['restarts'] != 1 else ''})")
    state = "running" if sup.get("running") else "NOT RUNNING (ragops up starts it)"
    return f"supervisor: {state}" + (": " + "; ".join(seen) if seen else "")


def _yn(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def logs(ctx: typer.Context,
         component: str | None = typer.Argument(None, help="router, blue, green, db-<node>, ... (default: list them)"),
         lines: int = typer.Option(50, "--lines", "-n", help="How many lines from the end (0: none, with -f only new ones)."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Show a component's log.

    Colours in the log (Traefik's) are kept only on a terminal without --no-color or NO_COLOR.

    Example: ragops logs green -n 100

    Example: ragops logs router -n 0 -f | grep -v healthz
    """
    env = ctx.obj
    config = env.config
    from ragops.errors import UsageError
    from ragops.platforms import get_platform

    if lines < 0:
        raise UsageError(f"--lines: {lines} is negative (0 or more)")
    platform = get_platform(config)
    files = platform.logs()
    if platform.owns_database_files:
        from ragops.db.pgctl import managed_nodes

        files.update({f"db-{node.name}": node.log_file for node in managed_nodes(config)})
    if component is None:
        env.emit({name: str(path) for name, path in files.items() if path.exists()},
                 lambda d: "\n".join(f"{k:20} {v}" for k, v in d.items()) or "no logs yet")
        return
    if component not in files:
        raise UsageError(f"unknown component {component!r} (one of: {', '.join(files)})")
    _show_log(files[component], lines, follow, color=sys.stdout.isatty() and not env.out.no_color)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _show_log(path, lines: int, follow: bool, *, color: bool) -> None:
    """Print the last `lines` lines, then (with follow) new ones; every write is flushed, so a reader
    behind a pipe gets each line even when `logs -f` is ended with SIGTERM."""
    from ragops.process import open_for_reading, tail
    from ragops.secrets import redact

    def show(text: str) -> None:
        text = redact(text)
        sys.stdout.write(text if color else _ANSI.sub("", text))
        sys.stdout.flush()

    if follow and not path.exists():
        from ragops.errors import OperationFailed

        raise OperationFailed(f"no log yet at {path} (has the component started?)")
    if follow:
        # SIGTERM (the usual end of `logs -f | ...`) leaves like Ctrl-C: quietly, nothing half-written
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if lines:
        text = tail(path, lines)
        show(text + "\n" if text else "")
    if follow:
        with open_for_reading(path) as handle:
            handle.seek(0, 2)
            while True:
                line = handle.readline()
                if line:
                    show(line.decode(errors="replace"))
                else:
                    time.sleep(0.25)
