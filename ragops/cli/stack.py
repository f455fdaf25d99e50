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
    from ragops.up_checks import check_files

    platform = get_platform(config)
    # before any process starts (and in the plan): the service, its migrations, the configured scripts
    checked = check_files(config, runs_service_from_source=platform.runs_service_from_source)
    if dry_run:   # the environment's platform plans its own `up`, from the config alone
        env.emit({"platform": platform.name, "checked": checked, "plan": platform.plan_up(),
                  "state_dir": str(config.state_dir)},
                 lambda d: "\n".join([f"checked: {c}" for c in d["checked"]] + [f"would do ({d['platform']}):"]
                                     + [f"  - {s}" for s in d["plan"]]))
        return

    from ragops.pitr.recover_journal import refuse_unfinished

    refuse_unfinished(config, "up")   # never start a half-recovered node as if nothing happened
    start = time.monotonic()
    result = UpResult(environment=config.env_name, router=platform.router_url())
    result.steps = platform.up(env.progress("up"))
    if config.env.smoke.golden:       # the golden queries' documents, once (ragops/golden.py)
        from ragops import golden
        from ragops.db.connect import api_keys

        result.steps += [f"seeded golden document {name}" for name in
                         golden.seed(config, platform.router_url(), api_keys(config)[0], env.progress("up"))]
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
        from ragops.pg.pgctl import server_home

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

    With database.ha: patroni, Patroni and PostgreSQL are read live; two writable nodes, a leader
    whose Patroni does not answer, a read-only leader, no leader or etcd quorum lost are named on the
    first line and the command exits 3.

    Example: ragops status --output json
    """
    env = ctx.obj
    from ragops.status import status as environment_status

    data = environment_status(env.config)
    if explain:
        from ragops.deploy.history import explain as explain_deploy

        data["explain"] = explain_deploy(data.get("last_deploy"))
    env.emit(data, _render_status)
    from ragops.cli.ha import exit_on_ha_problems
    from ragops.errors import GateFailed

    exit_on_ha_problems(data.get("ha"))
    nodes = data.get("database") or []
    if nodes and all(n.get("role") == "unreachable" for n in nodes):
        raise GateFailed("no database node answers (ragops db status)")
    if data.get("recover"):
        raise GateFailed(data["recover"]["hint"])


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
    if (data.get("ha") or {}).get("problems"):   # the first line: what is wrong with the database now
        parts.insert(0, Text("HA: " + "; ".join(data["ha"]["problems"]), style="bold red"))
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
    if data.get("recover"):
        parts.append(Text(f"RECOVER UNFINISHED: {data['recover']['hint']}"))
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
         component: str | None = typer.Argument(None, help="router, blue, green, colors (both), db-<node>, ... "
                                                 "(default: list them)"),
         lines: int = typer.Option(50, "--lines", "-n", help="How many lines from the end (0: none, with -f only new ones)."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
         level: str | None = typer.Option(None, "--level", help="JSON lines at this level or above: debug, info, "
                                          "warning, error, critical."),
         grep: str | None = typer.Option(None, "--grep", help="Only lines matching this regular expression."),
         trace: str | None = typer.Option(None, "--trace", help="Only the JSON lines of this trace id."),
         deploy: str | None = typer.Option(None, "--deploy", help="Only the JSON lines of this deploy id."),
         since: str | None = typer.Option(None, "--since", help="Only JSON lines newer than this: a duration "
                                          "(10m) or an ISO time.")) -> None:
    """Show a component's log. The service's JSON lines (RAG_LOG_FORMAT=json) print as one readable
    line each and can be filtered; -o json prints them as they are. `colors` follows blue and green
    together, in time order.

    Colours in the log (Traefik's) are kept only on a terminal without --no-color or NO_COLOR.

    Example: ragops logs green -n 100

    Example: ragops logs colors --level warning --since 10m

    Example: ragops logs colors --deploy d-20261207-103000-abc123 -o json

    Example: ragops logs router -n 0 -f | grep -v healthz
    """
    env = ctx.obj
    config = env.config
    from ragops.errors import UsageError
    from ragops.logview import LEVELS, LogFilter
    from ragops.platforms import get_platform

    if lines < 0:
        raise UsageError(f"--lines: {lines} is negative (0 or more)")
    if level is not None and level not in LEVELS:
        raise UsageError(f"--level: {level!r} is not one of {', '.join(LEVELS)}")
    try:
        wanted = LogFilter(level=level, grep=grep, trace=trace, deploy=deploy, since=_since(since))
    except re.error as exc:
        raise UsageError(f"--grep: not a regular expression: {exc}") from None
    platform = get_platform(config)
    files = platform.logs()
    if platform.owns_database_files:
        from ragops.pg.pgctl import managed_nodes

        files.update({f"db-{node.name}": node.log_file for node in managed_nodes(config)})
    if component is None:
        env.emit({name: str(path) for name, path in files.items() if path.exists()},
                 lambda d: "\n".join(f"{k:20} {v}" for k, v in d.items()) or "no logs yet")
        return
    colors = [files[c] for c in ("blue", "green") if c in files]
    if component == "colors" and colors:
        paths = colors
    elif component in files:
        paths = [files[component]]
    else:
        raise UsageError(f"unknown component {component!r} (one of: {', '.join([*files, 'colors'])})")
    _show_log(paths, lines, follow, wanted, raw=env.json, color=sys.stdout.isatty() and not env.out.no_color)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _since(text: str | None):
    """--since as an aware datetime: a duration back from now, or an ISO time (UTC when it has no zone)."""
    if text is None:
        return None
    from datetime import UTC, datetime, timedelta

    from ragops.durations import parse_duration
    from ragops.errors import UsageError

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except (ValueError, OverflowError):   # not a duration: a time, then
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: {text!r} is neither a duration (10m) nor an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _show_log(paths, lines: int, follow: bool, wanted, *, raw: bool, color: bool) -> None:
    """Print the last `lines` lines (of each file, merged in time order), then (with follow) new ones;
    every write is flushed, so a reader behind a pipe gets each line even when `logs -f` is ended
    with SIGTERM."""
    from ragops.logview import parse, pretty
    from ragops.process import open_for_reading, tail
    from ragops.secrets import redact

    def show(line: str) -> None:
        line = redact(line.rstrip("\n"))
        record = parse(line)
        if not wanted.keep(line, record):
            return
        text = pretty(record) if record is not None and not raw else line
        sys.stdout.write((text if color else _ANSI.sub("", text)) + "\n")
        sys.stdout.flush()

    if follow and not any(p.exists() for p in paths):
        from ragops.errors import OperationFailed

        raise OperationFailed(f"no log yet at {paths[0]} (has the component started?)")
    if follow:
        # SIGTERM (the usual end of `logs -f | ...`) leaves like Ctrl-C: quietly, nothing half-written
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if lines:
        # the colors interleave by their JSON timestamps; a text line sorts with the JSON line before it
        keyed = []
        for path in (p for p in paths if p.exists()):
            stamp = ""
            for line in (tail(path, lines) or "").splitlines():
                stamp = str((parse(line) or {}).get("timestamp", stamp))
                keyed.append((stamp, line))
        if len(paths) > 1:
            keyed.sort(key=lambda pair: pair[0])   # stable: a file's own order is kept within one stamp
        for _stamp, line in keyed[-lines:]:
            show(line)
    if follow:
        handles = []
        for path in paths:
            if path.exists():
                handle = open_for_reading(path)
                handle.seek(0, 2)
                handles.append(handle)
        while True:
            quiet = True
            for handle in handles:
                data = handle.readline()
                if data:
                    quiet = False
                    show(data.decode(errors="replace"))
            if quiet:
                time.sleep(0.25)
