"""`ragops dns status|setup|failover|failback|history`, through the DnsProvider that dns.provider names."""
from __future__ import annotations

import typer

dns_app = typer.Typer(help="DNS (Route 53): where the service's record points; fail over between regions.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dns_app, name="dns")


def _render_plan(p) -> str:
    if not p.change_needed:
        return f"{p.record} {p.type} already points to {p.new} (TTL {p.ttl}): nothing to change"
    return (f"plan: UPSERT {p.record} {p.type} in zone {p.zone_id}\n"
            f"  old: {p.old or '(no record)'}\n  new: {p.new}\n  TTL: {p.ttl}s")


def _render_change(c) -> str:
    if c.status == "unchanged":
        return _render_plan(c.plan)
    return (f"{c.plan.record} {c.plan.type}: {c.plan.old} -> {c.plan.new} (TTL {c.plan.ttl}s)\n"
            f"change {c.change_id} INSYNC after {c.seconds:.1f}s ({c.polls} polls); resolvers follow within the TTL")


@dns_app.command("status")
def status(ctx: typer.Context) -> None:
    """Where the record points now (primary, secondary or other) and its TTL; with
    dns.health_checks, each failover record and its health check's status.

    Example: ragops -e production dns status --output json
    """
    env = ctx.obj
    dns = env.config.dns
    if not any((dns.record, dns.zone, dns.zone_id, dns.primary, dns.secondary)):
        env.emit({"environment": env.config.env_name, "configured": False},
                 lambda d: f"DNS: not configured for {d['environment']} (set dns.record, dns.zone, dns.primary "
                           f"and dns.secondary in ragops.yaml to use DNS failover)")
        return
    from ragops.dns.registry import get_provider

    provider = get_provider(env.config)
    state = provider.status()
    if not dns.health_checks.enabled:
        env.emit(state, lambda s: f"{s.record} {s.type} -> {s.value or '(missing)'} ({s.points_to}), "
                                  f"TTL {s.ttl}, zone {s.zone_id}")
        return
    from dataclasses import asdict

    data = {**asdict(state), "failover_records": provider.health_status()}
    env.emit(data, _render_status)


def _render_status(d: dict) -> str:
    lines = [f"{d['record']} {d['type']} -> {d['value'] or '(missing)'} ({d['points_to']}), TTL {d['ttl']}, "
             f"zone {d['zone_id']}"]
    for r in d["failover_records"]:
        lines.append(f"  {r['role'].upper():9} {r['value'] or '(no failover record: run `ragops dns setup`)'}"
                     f"  health check {r['health_check'] or '-'}: {r['status']}"
                     + (f" ({r['healthy']}/{r['observations']} checkers)" if r["observations"] else ""))
    return "\n".join(lines)


def _render_setup(p) -> str:
    notes = "".join(f"\nnote: {n}" for n in p.notes)
    if not p.change_needed:
        return f"{p.record} {p.type}: health checks and PRIMARY/SECONDARY records in place: nothing to change{notes}"
    lines = [("applied" if p.applied else "plan") + f": failover routing for {p.record} {p.type} in zone {p.zone_id}"]
    for c in p.checks:
        cfg = c.config
        lines.append(f"  health check {c.role:9} {c.action:6} {cfg['Type']} {c.endpoint}:{cfg['Port']}"
                     f"{cfg['ResourcePath']}  every {cfg['RequestInterval']}s, {cfg['FailureThreshold']} failures"
                     f"  {c.id or ''}")
    if p.replaces_simple:
        lines.append(f"  record DELETE the plain record ({p.replaces_simple}); the pair below replaces it")
    for r in p.records:
        lines.append(f"  record {r.role.upper():9} {r.action:6} {r.value}  set {r.set_identifier}"
                     f"  health check {r.health_check or '(new)'}")
    if p.change_id:
        lines.append(f"change {p.change_id} INSYNC")
    return "\n".join(lines) + notes


@dns_app.command("setup")
def setup(ctx: typer.Context,
          dry_run: bool = typer.Option(False, "--dry-run", "--plan", help="Show the plan only.")) -> None:
    """Create a Route 53 health check per region endpoint and the PRIMARY/SECONDARY failover records.

    Prints the plan, asks (or --yes), applies; a second run changes nothing. Needs
    dns.health_checks: true; endpoints are dns.primary/dns.secondary (or regions.<n>.dns_value).

    \b
    Examples:
      ragops -e production dns setup --plan
      ragops -e production dns setup --yes --output json
    """
    env = ctx.obj
    from ragops.dns.registry import get_provider

    provider = get_provider(env.config)
    the_plan = provider.setup_plan()
    if dry_run or not the_plan.change_needed:
        env.emit(the_plan, _render_setup)
        return
    if not env.json:
        env.status(_render_setup(the_plan))
    env.confirm(f"Create the health checks and failover records for {the_plan.record}?")
    env.emit(provider.setup_apply(the_plan), _render_setup)


def _move(ctx: typer.Context, to: str, dry_run: bool) -> None:
    env = ctx.obj
    from ragops.dns.registry import get_provider

    provider = get_provider(env.config)
    the_plan = provider.plan(to)
    if dry_run or not the_plan.change_needed:
        env.emit(the_plan, _render_plan)
        return
    if not env.json:
        env.status(_render_plan(the_plan))
    env.confirm(f"Point {the_plan.record} at {the_plan.new}?")
    change = provider.apply(the_plan, progress=env.progress("dns"))
    env.emit(change, _render_change)


@dns_app.command("failover")
def failover(ctx: typer.Context,
             to: str = typer.Option("secondary", "--to", help="secondary (default), primary, or a region name."),
             dry_run: bool = typer.Option(False, "--dry-run", "--plan", help="Show the plan (record, old, new, TTL) only.")) -> None:
    """Point the record at the secondary region: one UPSERT, then poll until INSYNC.

    Example: ragops -e production dns failover --to secondary --yes
    """
    _move(ctx, to, dry_run)


@dns_app.command("failback")
def failback(ctx: typer.Context,
             dry_run: bool = typer.Option(False, "--dry-run", "--plan", help="Show the plan only.")) -> None:
    """Point the record back at the primary region.

    Example: ragops -e production dns failback --yes
    """
    _move(ctx, "primary", dry_run)


@dns_app.command("history")
def history(ctx: typer.Context, limit: int = typer.Option(20, "--limit", min=1, max=10_000)) -> None:
    """The journalled changes (change ids) from <state_dir>/dns-changes.jsonl.

    Example: ragops dns history --output json
    """
    env = ctx.obj
    from ragops.dns.registry import get_provider

    rows = get_provider(env.config).history(limit)
    env.emit(rows, lambda r: "\n".join(f"{e['at']}  {e['change_id']}  {e['status']}  {e['record']} -> {e['new']}"
                                       for e in r) or "no DNS changes recorded")
