"""`ragops db status|promote|switchover|rejoin|fence|sync|migrate`."""
from __future__ import annotations

import typer

db_app = typer.Typer(help="PostgreSQL topology: status, promotion, switchover, rejoin, migrations.",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    from ragops.cli.pitr import register_db as register_recover  # db recover (ragops/pitr)

    register_recover(db_app)


def _ha(env):
    """The HA engine in charge (database.ha: patroni), or None: ragops promotes itself (manual)."""
    from ragops.db.bringup import database_manager

    return database_manager(env.config)


def _locked(env, command: str):
    """The operations lock for a database change (brief: a deploy started meanwhile waits for it)."""
    from ragops.deploy.oplock import operation

    return operation(env.config, command, brief=True, past_dormant=True, progress=env.progress(command.split()[-1]))


def _render_ha_result(r) -> str:
    if r.action == "rejoin":
        return f"rejoin: {r.node} streams from the leader {r.previous_leader} ({r.seconds:.1f}s)"
    return (f"{r.action}: {r.node} leads now (was {r.previous_leader or 'none'}, {r.seconds:.1f}s); "
            "Patroni makes the old leader follow it")


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def _render_status(data: dict):
    from rich.table import Table

    table = Table(title=f"database topology (primary: {data['primary'] or 'none'})", title_justify="left")
    for col in ("node", "address", "role", "TL", "current/received", "replayed", "lag", "sync", "slots"):
        table.add_column(col)
    for n in data["nodes"]:
        role = n["role"] + (" (fenced)" if n["fenced"] else "") + (
            " streaming" if n["streaming"] else " not streaming" if n["role"] == "replica" else "")
        lag = "-" if n["lag_bytes"] is None and n["lag_seconds"] is None else \
            f"{_fmt(n['lag_bytes'], ' B')} / {_fmt(round(n['lag_seconds'], 2) if n['lag_seconds'] is not None else None, ' s')}"
        slots = ", ".join(f"{s['name']}{'*' if s['active'] else ''}" for s in n["slots"]) or "-"
        table.add_row(n["name"], f"{n['host']}:{n['port']}", role if n["reachable"] else f"unreachable: {n['error']}",
                      _fmt(n["timeline"]), _fmt(n["current_lsn"] or n["received_lsn"]), _fmt(n["replayed_lsn"]),
                      lag, _fmt(n["sync_state"]), slots)
    return table


from ragops.cli.ha import ha_app  # noqa: E402 - `db ha pause|resume|config`

db_app.add_typer(ha_app, name="ha")


@db_app.command("status")
def status(ctx: typer.Context) -> None:
    """Every node: role, timeline, WAL positions, lag in bytes and seconds, slots, sync state.

    Example: ragops db status --output json
    """
    env = ctx.obj
    from ragops.db.replication import primary_status, read_topology, topology

    statuses = topology(env.config)
    live = primary_status(statuses)
    data = {"primary": live.name if live else None, "nodes": [s.to_dict() for s in statuses],
            "journal": {k: v for k, v in read_topology(env.config).items() if k != "history"}}
    from ragops.pitr.recover_journal import state as recover_state

    unfinished = recover_state(env.config)
    data["recover"] = unfinished
    if unfinished:
        env.status(f"warning: {unfinished['hint']}")
    from ragops.db.bringup import database_manager

    manager = database_manager(env.config)
    if manager is not None:   # the HA engine's view: leader, members, DCS health
        from ragops.cli.ha import exit_on_ha_problems, render_ha

        ha = manager.status()
        data["ha"] = ha
        env.emit(data, lambda d: render_ha(d["ha"], _render_status(d)))
        exit_on_ha_problems(ha)
        return
    env.emit(data, _render_status)


def _render_promote(result) -> str:
    lines = [f"{result.node} is the primary now (timeline {result.timeline}, {result.seconds:.1f}s)"]
    for step in result.steps:
        lines.append(f"  {step['at']}  {step['step']}{': ' + step['detail'] if step['detail'] else ''}")
    if result.previous_primary:
        lines.append(f"next: ragops db rejoin {result.previous_primary}   (turn the old primary into a replica)")
    return "\n".join(lines)


@db_app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="The replica to promote."),
    max_lag: int | None = typer.Option(None, "--max-lag", help="Refuse when the replica lags more than BYTES."),
    force: bool = typer.Option(False, "--force", help="Promote even when the lag is above --max-lag."),
    confirm_down: bool = typer.Option(False, "--confirm-down", help="The old primary is unreachable and I confirm it is down."),
    fence: bool = typer.Option(True, "--fence/--no-fence", help="Fence the old primary (default), or only check that it is fenced."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would happen; change nothing."),
) -> None:
    """Fence the old primary, promote NODE (pg_promote), make a test write, record the topology.

    Example: ragops db promote replica1 --max-lag 1048576 --yes
    """
    env = ctx.obj
    if _ha(env) is not None:   # Patroni promotes: its failover, refused while a healthy leader runs
        from ragops.ha.verbs import failover

        if dry_run:
            env.emit({"node": node, "steps": [f"Patroni failover to {node} (POST /failover)"]},
                     lambda d: "plan:\n  1. " + d["steps"][0])
            return
        env.confirm(f"Ask Patroni to promote {node}?")
        with _locked(env, "ragops db promote"):
            env.emit(failover(env.config, node, force=force, progress=env.progress("promote")), _render_ha_result)
        return
    from ragops.db.replication import check_promotion, promote

    if dry_run:  # the same checks as the real run, so a dry run fails exactly where the run would
        check = check_promotion(env.config, node, max_lag=max_lag, force=force, confirm_down=confirm_down,
                                fence_old=fence)
        fencing = {"already-fenced": "already fenced (read-only)", "down-verified": "down (no postmaster): verified",
                   "down-confirmed": "unreachable, confirmed down (--confirm-down)",
                   "fence": "fence it (stop a managed server, else read-only + end sessions)"}
        plan = {"node": node, "role": check.target.role, "lag_bytes": check.lag_bytes, "notes": check.notes,
                "steps": [*(f"{s.name}: {fencing[m]}" for s, m in check.fencing),
                          f"SELECT pg_promote(wait => true) on {node}", f"test write into ragops_heartbeat on {node}",
                          "record topology.json"]}
        env.emit(plan, lambda d: "plan:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(d["steps"])))
        return
    env.confirm(f"Fence the old primary and promote {node}?")
    with _locked(env, "ragops db promote"):
        result = promote(env.config, node, max_lag=max_lag, force=force, confirm_down=confirm_down, fence_old=fence,
                         progress=env.progress("promote"))
    env.emit(result, _render_promote)


@db_app.command("switchover")
def switchover_cmd(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="The replica that becomes the primary."),
    rejoin_old: bool = typer.Option(False, "--rejoin", help="Afterwards turn the old primary into a replica of NODE."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for NODE to replay everything."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the steps; change nothing."),
) -> None:
    """Planned promotion with zero data loss: stop writes, wait for full replay, promote.

    Example: ragops db switchover replica1 --rejoin --yes
    """
    env = ctx.obj
    if _ha(env) is not None:   # Patroni's switchover: clean stop of the leader, the old leader follows
        from ragops.ha.verbs import switchover as ha_switchover

        if dry_run:
            env.emit({"node": node, "steps": [f"Patroni switchover to {node} (POST /switchover)"]},
                     lambda d: "plan:\n  1. " + d["steps"][0])
            return
        env.confirm(f"Switch the primary over to {node} (writes stop briefly)?")
        with _locked(env, "ragops db switchover"):
            env.emit(ha_switchover(env.config, node, timeout=timeout, progress=env.progress("switchover")),
                     _render_ha_result)
        return
    from ragops.db.standby import switchover

    if dry_run:
        steps = ["stop writes on the primary (read-only, end client sessions; local: clean shutdown)",
                 f"wait until {node} replayed the primary's final WAL position", f"promote {node} + test write"]
        if rejoin_old:
            steps.append(f"rejoin the old primary as a replica of {node} (pg_rewind)")
        env.emit({"node": node, "steps": steps},
                 lambda d: "plan:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(d["steps"])))
        return
    env.confirm(f"Switch the primary over to {node} (writes stop briefly)?")
    with _locked(env, "ragops db switchover"):
        result = switchover(env.config, node, timeout=timeout, rejoin_old=rejoin_old,
                            progress=env.progress("switchover"))
    env.emit(result, lambda r: (f"switched over from {r.previous_primary} to {r.node} in {r.seconds:.1f}s: "
                                f"replayed {r.replayed_lsn} >= final {r.final_lsn}, 0 rows lost"
                                + ("" if r.rejoined else f"\nnext: ragops db rejoin {r.previous_primary}")))


@db_app.command("rejoin")
def rejoin_cmd(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="The former primary (or any node) to make a replica of the current primary."),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="Fail instead of re-cloning when pg_rewind fails."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the steps; change nothing."),
) -> None:
    """Turn NODE into a streaming replica of the current primary.

    local: pg_rewind (a fresh clone if that fails); docker: its old data is moved aside inside its
    volume and the node is re-cloned with pg_basebackup; with Patroni in charge, Patroni rejoins it.

    Example: ragops db rejoin primary --yes
    """
    env = ctx.obj
    if _ha(env) is not None:   # Patroni rejoins by itself (pg_rewind); its Patroni is started if down
        from ragops.ha.verbs import rejoin as ha_rejoin

        if dry_run:
            env.emit({"node": node, "steps": [f"start Patroni for {node} if down; wait until it streams"]},
                     lambda d: "plan:\n  1. " + d["steps"][0])
            return
        env.emit(ha_rejoin(env.config, node, progress=env.progress("rejoin")), _render_ha_result)
        return
    from ragops.db.standby import rejoin

    if dry_run:
        steps = [f"stop {node} if it runs", "crash recovery in single-user mode if it was not shut down cleanly",
                 "pg_rewind --source-server <current primary>", "standby.signal + primary_conninfo + slot",
                 f"start {node} and wait until it streams"]
        env.emit({"node": node, "steps": steps},
                 lambda d: "plan:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(d["steps"])))
        return
    env.confirm(f"Rewind {node} (its writes not on the current primary are discarded) and make it a replica?")
    result = rejoin(env.config, node, fallback_basebackup=not no_fallback, progress=env.progress("rejoin"))
    env.emit(result, lambda r: f"{r.node} streams from {r.primary} (method: {r.method}, slot {r.slot}, "
                               f"lag {_fmt(r.lag_bytes, ' B')}, {r.seconds:.1f}s)")


@db_app.command("fence")
def fence_cmd(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="The node that must stop accepting writes."),
    confirm_down: bool = typer.Option(False, "--confirm-down", help="It is unreachable and I confirm it is down."),
) -> None:
    """Make NODE refuse writes: stop it (local process; docker: its container, restart policy no)
    or set it read-only and end its sessions.

    Example: ragops db fence primary --yes
    """
    env = ctx.obj
    from ragops.db.replication import fence

    env.confirm(f"Fence {node} (no more writes on it)?")
    result = fence(env.config, node, confirm_down=confirm_down, progress=env.progress("fence"))
    env.emit(result, lambda r: f"{r.node}: {r.method} ({r.detail})")


@db_app.command("sync")
def sync_cmd(ctx: typer.Context) -> None:
    """Apply `database.synchronous` to the current primary (synchronous_standby_names).

    Example: ragops db sync
    """
    env = ctx.obj
    from ragops.db.standby import configure_sync

    result = configure_sync(env.config, progress=env.progress("sync"))
    env.emit(result, lambda r: f"{r.primary}: synchronous_standby_names = '{r.synchronous_standby_names}'")


@db_app.command("migrate")
def migrate_cmd(ctx: typer.Context) -> None:
    """Apply the service's SQL migrations to the current primary.

    Example: ragops db migrate --output json
    """
    env = ctx.obj
    config = env.config
    from ragops.db.connect import node_dsn
    from ragops.db.replication import current_primary
    from ragops.pg.migrate import apply_migrations

    primary = current_primary(config)
    dsn = node_dsn(config, primary, dbname=config.database.name)
    migrations_dir = config.resolve_path(config.service.path) / "migrations"
    result = apply_migrations(dsn, migrations_dir, app_user=config.database.user, progress=env.progress("migrate"))
    env.emit({"node": primary.name, "applied": list(result)},
             lambda d: f"{d['node']}: applied {', '.join(d['applied'])}" if d["applied"]
             else f"{d['node']}: schema up to date")
