"""`ragops db ha pause|resume|config` and the rendering of Patroni's view (database.ha: patroni)."""
from __future__ import annotations

import typer

ha_app = typer.Typer(help="Patroni (database.ha: patroni): maintenance mode and the DCS settings.",
                     no_args_is_help=True)


def render_ha(ha: dict, topology=None):
    """Leader, members (role, state, timeline, lag) and the etcd quorum, after the PostgreSQL view."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    dcs = ha["dcs"]
    title = (f"Patroni {ha['scope']}: leader {ha['leader'] or 'none'}"
             f"{' (paused: no automatic failover)' if ha['paused'] else ''}; etcd {dcs['healthy']}/"
             f"{len(dcs['members'])} healthy{'' if dcs['quorum'] else ' (NO QUORUM)'}")
    table = Table(title=title, title_justify="left")
    for col in ("member", "address", "role", "state", "TL", "lag"):
        table.add_column(col)
    for m in ha["members"]:
        table.add_row(m["name"], f"{m['host']}:{m['port']}", m["role"], m["state"], str(m["timeline"] or "-"),
                      "-" if m["lag_bytes"] is None else f"{m['lag_bytes']} B")
    if not ha["reachable"]:
        table.add_row("-", "-", "-", "no Patroni REST API answers", "-", "-")
    head = [Text("HA: " + "; ".join(ha["problems"]), style="bold red")] if ha.get("problems") else []
    return Group(*head, *([topology] if topology is not None else []), table)


def exit_on_ha_problems(ha: dict | None) -> None:
    """Exit 3 (after the output) when the live HA view names a problem."""
    if ha and ha.get("problems"):
        from ragops.errors import GateFailed

        raise GateFailed("database HA: " + "; ".join(ha["problems"]), hint="ragops db status; see README "
                         "'Automatic failover (Patroni)'")


def _manager(env):
    from ragops.db.bringup import database_manager
    from ragops.errors import ConfigError

    manager = database_manager(env.config)
    if manager is None:
        raise ConfigError(f"environments.{env.config.env_name}.database.ha: 'manual': `db ha` needs ha: patroni")
    return manager


@ha_app.command("pause")
def pause(ctx: typer.Context) -> None:
    """Maintenance mode: Patroni stops failing over (for planned work on a node).

    Example: ragops db ha pause --yes
    """
    env = ctx.obj
    _manager(env)
    from ragops.ha.verbs import set_pause

    env.confirm("Pause Patroni (no automatic failover until `ragops db ha resume`)?")
    env.emit(set_pause(env.config, True), lambda d: "Patroni paused: no automatic failover")


@ha_app.command("resume")
def resume(ctx: typer.Context) -> None:
    """Leave maintenance mode: Patroni fails over by itself again.

    Example: ragops db ha resume
    """
    env = ctx.obj
    _manager(env)
    from ragops.ha.verbs import set_pause

    env.emit(set_pause(env.config, False), lambda d: "Patroni resumed: automatic failover is on")


@ha_app.command("config")
def config_cmd(
    ctx: typer.Context,
    changes: list[str] = typer.Argument(None, help="KEY=VALUE: ttl, loop_wait, retry_timeout, "
                                                   "maximum_lag_on_failover, synchronous_mode."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
) -> None:
    """Show Patroni's DCS settings, or change them (plan first, then confirm).

    ha_sync (from synchronous_mode / synchronous_mode_strict) is shown with the guarantee it gives.

    Examples: ragops db ha config --output json
              ragops db ha config ttl=30 loop_wait=2 --dry-run
    """
    env = ctx.obj
    _manager(env)
    from ragops.ha.verbs import TUNABLE, apply_config, parse_changes, plan_config, read_config

    wanted = parse_changes(changes or [])
    if not wanted:
        from ragops.ha.sync import GUARANTEES, mode_of

        current = read_config(env.config)
        mode = mode_of(current)
        env.emit({k: current.get(k) for k in TUNABLE} | {"pause": bool(current.get("pause")), "ha_sync": mode,
                                                        "guarantee": GUARANTEES[mode]},
                 lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
        return
    plan = plan_config(env.config, wanted)
    render = "plan:\n" + "\n".join(f"  {p['key']}: {p['from']} -> {p['to']}" for p in plan) if plan else "no change"
    if dry_run or not plan:
        env.emit({"plan": plan, "applied": False}, lambda d: render)
        return
    env.status(render)
    env.confirm("Apply these settings to the running cluster?")
    env.emit({"plan": plan, "applied": apply_config(env.config, wanted)},
             lambda d: "applied: " + ", ".join(f"{k}={v}" for k, v in d["applied"].items()))
