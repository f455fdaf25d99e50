"""`ragops failover`: the whole region failover in one command, with a measured report."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("failover")(failover)


def _render(r) -> str:
    lines = [f"failover {r.from_region or r.old_primary} -> {r.to_region or r.new_primary}: "
             f"{r.new_primary} is the primary"]
    for s in r.steps:
        lines.append(f"  {s.started_at}  {'ok ' if s.ok else 'FAILED'} {s.name} ({s.seconds:.2f}s) {s.detail}")
    slo = r.slo
    lines.append(f"RTO {r.rto_seconds:.1f}s to writes accepted + DNS in sync"
                 + (f", {r.rto_service_seconds:.1f}s to the service passing smoke" if r.rto_service_seconds else "")
                 + f" (target {slo['rto_seconds']:.0f}s: {'met' if slo.get('rto_met') else 'MISSED'})")
    rpo_s = "unknown" if r.rpo_seconds is None else f"{r.rpo_seconds:.2f}s"
    met = {True: "met", False: "MISSED", None: "not measurable"}[slo.get("rpo_met")]
    lines.append(f"RPO {r.rpo_bytes if r.rpo_bytes is not None else '?'} bytes / {rpo_s} "
                 f"(target {slo['rpo_seconds']:.0f}s: {met}; {r.rpo_source})")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def failover(ctx: typer.Context,
             to: str | None = typer.Option(
                 None, "--to", help="Target region (default: the region whose database node is a replica)."),
             failure_time: str | None = typer.Option(
                 None, "--failure-time", help="When the failure began (ISO 8601); RTO is measured from it."),
             confirm_down: bool = typer.Option(False, "--confirm-down", help="The old primary is unreachable and I confirm it is down."),
             skip_service: bool = typer.Option(False, "--skip-service", help="Database and DNS only; leave the service alone."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing.")) -> None:
    """Region failover: fence the old primary, promote, DNS, start the service, smoke test, report RTO/RPO.

    Example: ragops failover --to secondary --yes --output json
    """
    env = ctx.obj
    config = env.config
    from ragops.db.replication import topology
    from ragops.failover import choose_target, region_failover

    statuses = topology(config)
    region, node = choose_target(config, to, statuses)
    if dry_run:
        from ragops.dns.base import configured as dns_configured

        steps = ["measure the replica's lag (RPO)", "fence the old primary (stop it, or read-only + end sessions)",
                 f"promote {node} (pg_promote) and a test write",
                 f"DNS to {region}" if dns_configured(config) else "DNS: not configured, skipped",
                 "" if skip_service else f"start/scale the service in region {region} and route 100% to it",
                 "" if skip_service else "smoke test through the region's router", "report RTO and RPO"]
        env.emit({"to_region": region, "node": node, "steps": [s for s in steps if s]},
                 lambda d: "plan:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(d["steps"])))
        return
    env.confirm(f"Fail over to region {region} (promote {node})?")
    report = region_failover(config, to=region, failure_time=failure_time, confirm_down=confirm_down,
                             skip_service=skip_service, progress=env.progress("failover"))
    env.emit(report, _render)
