"""Observability and operations: Prometheus, alert rules, dashboards, tracing; drills (fresh
evidence earns full credit, stale evidence part of it), runbooks, the pre-deploy checklist."""
from __future__ import annotations

import json

from ragops.audit.facts import Facts
from ragops.audit.model import Outcome, check, failed, not_applicable, partial, passed
from ragops.resources import shipped_dir

STALE_CREDIT = 0.5     # a passed drill older than its period: partial credit (README: the formula)


def shipped_alert_names() -> list[str]:
    import yaml

    rules = yaml.safe_load((shipped_dir("templates") / "alerts" / "ragops-alerts.yml").read_text())
    return [r["alert"] for group in rules.get("groups", []) for r in group.get("rules", []) if "alert" in r]


@check("observability.prometheus-targets", severity="high", title="Prometheus scrapes every target",
       expected="a Prometheus configured (monitoring.prometheus / monitoring.url) with every active target up",
       fix="set monitoring.prometheus: local (or monitoring.url), then ragops up")
def prometheus_targets(facts: Facts) -> Outcome:
    if facts.prometheus_url is None:
        return failed("no Prometheus configured: nothing records the service's metrics")
    targets = facts.prometheus("targets").get("activeTargets") or []
    if not targets:
        return failed(f"{facts.prometheus_url} has no active target")
    # an idle color (stopped between deploys) is expected to be down: only running colors count
    running = {c["color"] for c in facts.status.get("colors") or [] if c.get("running")}
    targets = [t for t in targets if (t.get("labels") or {}).get("color") in (None, *running)]
    down = [f"{t.get('scrapeUrl')} ({t.get('lastError') or t.get('health')})" for t in targets if t.get("health") != "up"]
    if down and len(down) == len(targets):
        return failed(f"every target down: {'; '.join(down[:3])}")
    if down:
        return partial(f"{len(down)} of {len(targets)} target(s) not up: {'; '.join(down[:3])}",
                       (len(targets) - len(down)) / len(targets))
    return passed(f"{len(targets)} target(s) up")


@check("observability.alert-rules", severity="high", title="The alert rules are loaded",
       expected="every rule of templates/alerts/ragops-alerts.yml loaded in Prometheus",
       fix="add templates/alerts/ragops-alerts.yml to Prometheus's rule_files (the local one loads it), then reload")
def alert_rules(facts: Facts) -> Outcome:
    if facts.prometheus_url is None:
        return failed("no Prometheus configured: no alert can fire")
    loaded = {r.get("name") for g in facts.prometheus("rules").get("groups") or [] for r in g.get("rules") or []}
    missing = [name for name in shipped_alert_names() if name not in loaded]
    if missing:
        return failed(f"{len(missing)} shipped alert rule(s) not loaded: {', '.join(missing)}")
    return passed(f"{len(loaded)} rule(s) loaded, every shipped alert among them")


@check("observability.alerts-firing", severity="high", title="No alert is firing",
       expected="no alert of severity warning or above in state firing",
       fix="open the alert's runbook (its annotations) and resolve the cause")
def alerts_firing(facts: Facts) -> Outcome:
    if facts.prometheus_url is None:
        return not_applicable("no Prometheus configured (see observability.prometheus-targets)")
    alerts = facts.prometheus("alerts").get("alerts") or []
    firing = [a for a in alerts if a.get("state") == "firing"
              and (a.get("labels") or {}).get("severity", "warning") not in ("info", "none")]
    if firing:
        return failed("firing: " + ", ".join(f"{a['labels'].get('alertname')} ({a['labels'].get('severity')})" for a in firing))
    return passed(f"{len(alerts)} alert(s) known, none firing at warning or above")


@check("observability.dashboards", severity="low", title="Dashboards exist for the service",
       expected="the Grafana dashboard shipped in templates/grafana with panels on the service's metrics",
       fix="import templates/grafana/rag-service.json into Grafana")
def dashboards(facts: Facts) -> Outcome:
    folder = shipped_dir("templates") / "grafana"
    boards = sorted(folder.glob("*.json")) if folder.is_dir() else []
    panels = 0
    for board in boards:
        try:
            panels += len(json.loads(board.read_text()).get("panels") or [])
        except (OSError, ValueError):
            return failed(f"{board} is not a dashboard JSON")
    if not panels:
        return failed(f"no dashboard with panels in {folder}")
    return passed(f"{len(boards)} dashboard(s), {panels} panel(s)")


@check("observability.tracing", severity="low", title="Tracing is configured where enabled",
       expected="monitoring.tracing set and its collector answering",
       fix="set monitoring.tracing (when this ragops supports it)")
def tracing(facts: Facts) -> Outcome:
    setting = getattr(facts.config.env.monitoring, "tracing", None)
    if not setting or setting == "off":
        return not_applicable("tracing is not enabled (monitoring.tracing)")
    return passed(f"monitoring.tracing: {setting}")


def drill_kind(report: dict) -> str:
    return str(report.get("drill", "")).removeprefix("drill-")


def _drill_check(kind: str, applies) -> None:
    @check(f"operations.drill-{kind}", severity="high", title=f"The {kind} drill passed recently",
           expected=f"a passed `{kind}` drill within its period (audit.drill_periods), RTO/RPO within slo",
           fix=f"ragops -e <staging> drill run {kind} --report <folder>   (and list the folder in audit.drill_reports)")
    def drill(facts: Facts) -> Outcome:
        reason = applies(facts)
        if reason:
            return not_applicable(reason)
        reports = [r for r in facts.drill_reports if drill_kind(r) == kind]
        if not reports:
            return failed(f"no {kind} drill report found")
        last = reports[0]
        when = last.get("finished_at") or last.get("generated_at")
        age = facts.age_seconds(when)
        period = facts.settings.drill_periods.get(kind, facts.settings.default_drill_period)
        rto, rpo = last.get("rto") or {}, last.get("rpo") or {}
        measured = (f"RTO {rto.get('seconds')} s (target {rto.get('target_seconds')}), "
                    f"RPO {rpo.get('seconds')} s (target {rpo.get('target_seconds')})")
        observed = f"last {kind} drill {when}: {last.get('verdict')}; {measured}"
        evidence = {"report": last.get("_path"), "rto": rto, "rpo": rpo, "finished_at": when}
        if last.get("exit_code") not in (0, None) or rto.get("met") is False or rpo.get("met") is False:
            return failed(observed, **evidence)
        if age is None or age > period:
            return partial(observed + f" - older than its period ({period / 86400:.0f} days)", STALE_CREDIT, **evidence)
        return passed(observed, **evidence)


def _always(_facts: Facts) -> str | None:
    return None


def _needs_patroni(facts: Facts) -> str | None:
    return None if facts.config.database.ha == "patroni" else "database.ha is manual (no automatic failover to drill)"


def _needs_regions(facts: Facts) -> str | None:
    return None if facts.config.env.regions else "no failover region configured (regions)"


for _kind, _applies in (("backup-restore", _always), ("pitr", _always), ("deploy-rollback", _always),
                        ("failover", _needs_regions), ("auto-failover", _needs_patroni)):
    _drill_check(_kind, _applies)


@check("operations.runbooks-valid", severity="medium", title="Every runbook is valid",
       expected="`ragops runbook validate` finds no issue",
       fix="ragops runbook validate   (each issue is FILE:LINE)")
def runbooks_valid(facts: Facts) -> Outcome:
    rows = facts.runbooks
    bad = [r for r in rows if r["issues"]]
    if bad:
        return failed(f"{len(bad)} invalid: " + "; ".join(f"{r['name']}: {r['issues'][0]}" for r in bad[:3]))
    return passed(f"{len(rows)} runbook(s) valid")


@check("operations.pre-deploy", severity="medium", title="The pre-deploy checklist passed last time",
       expected="the latest run of the pre-deploy runbook succeeded",
       fix="ragops runbook run pre-deploy")
def pre_deploy(facts: Facts) -> Outcome:
    runs = [r for r in facts.runbook_runs if r.get("runbook") == "pre-deploy"]
    if not runs:
        return failed("the pre-deploy checklist never ran in this environment")
    last = runs[0]
    observed = f"run {last.get('run_id')} at {last.get('started_at')}: {last.get('status')}"
    if last.get("status") != "succeeded":
        return failed(observed + (f" at {last.get('failed_step')}" if last.get("failed_step") else ""))
    return passed(observed)
