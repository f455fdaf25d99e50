"""`ragops up | status | down | logs`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

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
    if dry_run:
        db = config.database
        plan = [f"database: primary {db.primary.name} on {db.primary.host}:{db.primary.port}"] + \
               [f"database: replica {r.name} on {r.host}:{r.port} (pg_basebackup -R)" for r in db.replicas] + \
               [f"database: role {db.user}, database {db.name}, migrations from {config.service.path}/migrations",
                f"router: Traefik on {config.router.listen} (API {config.router.api})",
                f"service: blue {config.service.version} on 127.0.0.1:{config.service.port}, 100% traffic"]
        env.emit({"plan": plan, "state_dir": str(config.state_dir)},
                 lambda d: "\n".join(["would do:"] + [f"  - {s}" for s in d["plan"]]))
        return
    from ragops.platforms import get_platform

    start = time.monotonic()
    platform = get_platform(config)
    result = UpResult(environment=config.env_name, router=platform.router_url())
    result.steps = platform.up(env.progress("up"))
    result.seconds = round(time.monotonic() - start, 2)
    env.emit(result, lambda r: f"{r.environment} is up: {r.router} ({len(r.steps)} changes, {r.seconds:.1f}s)"
             if r.steps else f"{r.environment} is already up: {r.router}")


def down(ctx: typer.Context,
         purge: bool = typer.Option(False, "--purge", help="Also delete the state directory (data, backups on file://, secrets).")) -> None:
    """Stop everything cleanly (data kept). With --purge, delete the state directory too.

    Example: ragops down --purge --yes
    """
    env = ctx.obj
    config = env.config
    if purge:
        env.confirm(f"Delete {config.state_dir} (databases, logs, local secrets) of {config.env_name}?")
    from ragops.platforms import get_platform

    steps = get_platform(config).down(purge=purge, progress=env.progress("down"))
    env.emit({"environment": config.env_name, "steps": steps},
             lambda d: f"{d['environment']} is down" + (f" ({len(d['steps'])} stopped)" if d["steps"] else " (nothing was running)"))


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
    parts = [head, colors, db]
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
         component: Optional[str] = typer.Argument(None, help="router, blue, green, db-<node>, ... (default: list them)"),
         lines: int = typer.Option(50, "--lines", "-n", help="How many lines from the end."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Show a component's log.

    Example: ragops logs green -n 100
    """
    env = ctx.obj
    config = env.config
    from ragops.errors import UsageError
    from ragops.platforms import get_platform

    platform = get_platform(config)
    files = platform.logs()
    for node in [config.database.primary, *config.database.replicas]:
        files[f"db-{node.name}"] = config.state_dir / "logs" / f"db-{node.name}.log"
    if component is None:
        env.emit({name: str(path) for name, path in files.items() if path.exists()},
                 lambda d: "\n".join(f"{k:20} {v}" for k, v in d.items()) or "no logs yet")
        return
    if component not in files:
        raise UsageError(f"unknown component {component!r} (one of: {', '.join(files)})")
    from ragops.process import tail
    from ragops.secrets import redact

    path = files[component]
    print(redact(tail(path, lines)))
    if follow:
        with open(path) as handle:
            handle.seek(0, 2)
            while True:
                line = handle.readline()
                if line:
                    print(redact(line), end="", flush=True)
                else:
                    time.sleep(0.25)
