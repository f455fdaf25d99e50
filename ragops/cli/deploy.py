"""`ragops deploy | rollback | promote | abort | history | lock | smoke`."""
from __future__ import annotations

from typing import Any

import typer

from ragops.cli.fast_path import render_result as _render_result
from ragops.cli.fast_path import rollback as run_rollback
from ragops.events import Event
from ragops.settings.labels import check_version_label

lock_app = typer.Typer(help="Inspect or break the deploy lock.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("rollback")(rollback)
    app.command("promote")(promote)
    app.command("abort")(abort)
    app.command("history")(history)
    app.command("smoke")(smoke)
    app.add_typer(lock_app, name="lock")


class LiveView:
    """On a terminal: a live panel with the phase, the router weights, the latest analysis
    values and the steps so far, all read from the engine's events (ragops.events). Elsewhere
    each event is a plain status line."""

    def __init__(self, env, title: str):
        self.env = env
        self.title = title
        self.phase = "-"
        self.steps: list[str] = []
        self.weights: dict[str, int] = {}
        self.switch_ms: float | None = None     # None while the router has not confirmed them
        self.analysis: dict = {}
        self.live: Any = None   # a rich Live panel on a terminal

    def __enter__(self):
        if self.env.interactive and not self.env.json and self.env.verbosity >= 0:
            from rich.live import Live

            self.live = Live(self._render(), console=self.env.err, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self.report

    def __exit__(self, *exc):
        if self.live:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def report(self, event: Event) -> None:
        if self.live is None:
            self.env.status(f"deploy: {event.message}")
            return
        self.apply(event)
        self.live.update(self._render())

    def apply(self, event: Event) -> None:
        """Update the panel's fields from one event."""
        data = event.data
        if event.kind == "phase":
            self.phase = data.get("phase", self.phase)
        elif event.kind == "weights":
            self.weights, self.switch_ms = dict(data.get("weights") or {}), None
        elif event.kind == "analysis":
            self.analysis = dict(data)
        else:
            if event.kind == "switch":
                self.weights, self.switch_ms = dict(data.get("weights") or {}), data.get("ms")
            if "analysis" in data:      # the verdict of an analysis window
                verdict = dict(data["analysis"])
                verdict["elapsed_s"] = verdict.pop("window_s", None)    # its window_s is the time it took
                self.analysis = {**self.analysis, **verdict}
            self.steps.append(event.message.strip())

    def weights_text(self) -> str:
        if not self.weights:
            return "-"
        shown = ", ".join(f"{color} {weight}%" for color, weight in sorted(self.weights.items()))
        return shown + (" (applying)" if self.switch_ms is None else f" (router confirmed in {self.switch_ms:.0f}ms)")

    def analysis_text(self) -> str:
        a = self.analysis
        if not a:
            return "-"
        limits = f"max error rate {a.get('max_error_rate', 0):.0%}, max p95 {a.get('max_p95_ms', 0):.0f}ms"
        if not a.get("requests"):
            return f"{a.get('color', '?')}: waiting for data ({limits})"
        elapsed = f"{a.get('elapsed_s') or 0:.0f}/{a.get('window_s') or 0:.0f}s"
        text = (f"{a.get('color', '?')}: {a['requests']} req, errors {a.get('error_rate') or 0:.1%}, "
                f"p95 {a.get('p95_ms') or 0:.0f}ms, {elapsed} ({limits})")
        if "passed" in a:
            verdict = " passed" if a["passed"] else (" inconclusive: " if a.get("inconclusive") else " FAILED: ")
            text += verdict + ("; ".join(a.get("breaches") or []) if not a["passed"] else "")
        return text

    def _render(self):
        from rich.panel import Panel
        from rich.text import Text

        from ragops.secrets import redact

        body = Text()
        body.append(f"phase     {self.phase}\n")
        body.append(f"weights   {self.weights_text()}\n", style="bold")
        body.append(f"analysis  {redact(self.analysis_text())}\n")
        for line in self.steps[-12:]:
            style = "red" if "FAILED" in line else ("green" if line.startswith("ok ") else None)
            body.append(redact(line) + "\n", style=style)
        return Panel(body, title=self.title, expand=False)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    import re

    from ragops.errors import UsageError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set: expected KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"--set: {key!r} is not an environment variable name (letters, digits and '_', "
                             "not starting with a digit)")
        out[key] = value
    return out


def deploy(ctx: typer.Context,
           version: str | None = typer.Option(None, "--version", help="The version to deploy."),
           strategy: str | None = typer.Option(None, "--strategy",
                                               help="blue-green, canary or shadow (default: deploy.strategy)."),
           steps: str | None = typer.Option(None, "--steps", help="Canary weights, e.g. 10,25,50,100."),
           step_pause: str | None = typer.Option(None, "--step-pause", help="Analysis window per canary step, e.g. 30s."),
           pause_at: int | None = typer.Option(None, "--pause-at", min=1, max=99,
                                                 help="Pause after this canary weight until `ragops promote`."),
           set_env: list[str] = typer.Option([], "--set", help="KEY=VALUE service environment for the new version (repeatable)."),
           plan_only: bool = typer.Option(False, "--plan", "--dry-run",
                                          help="Print the ordered steps, gates and timeouts; change nothing."),
           resume_: bool = typer.Option(False, "--resume", help="Finish an interrupted deploy from its journal."),
           on_inconclusive: str | None = typer.Option(
               None, "--on-inconclusive",
               help="pause (default: the canary stays at its weight, exit 3, then promote/abort) or fail."),
           duration: str | None = typer.Option(None, "--duration",
                                               help="shadow: how long the shadow color is analysed, e.g. 2m."),
           mirror_percent: int = typer.Option(100, "--mirror-percent",
                                              help="shadow: share (1-100) of the live requests copied to the shadow."),
           mirror_writes: bool = typer.Option(
               False, "--mirror-writes",
               help="shadow: also mirror POST/PUT/PATCH/DELETE. Off by default: both colors share one database, "
                    "so a mirrored write is applied twice."),
           build_first: bool = typer.Option(
               False, "--build",
               help="docker: build <service.image>:<version> on every host first (like `ragops build`), then deploy."),
           then: str | None = typer.Option(None, "--then",
                                           help="shadow: blue-green = deploy the version after a passed shadow "
                                                "analysis (default: stop the shadow color)."),
           ) -> None:
    """Deploy a new version: blue-green (default) or canary, with health gates, smoke tests,
    metric analysis and automatic rollback; or shadow: the new version gets a copy of live
    traffic (its answers are dropped, users only ever get the live version's), is analysed,
    and is stopped again (or deployed with --then blue-green). Shadow mirrors only GET/HEAD
    unless --mirror-writes: a mirrored write would be applied twice to the shared database.

    \b
    Examples:
      ragops deploy --version v2 --plan
      ragops deploy --version v2 --yes
      ragops deploy --version v2 --strategy canary --steps 10,50,100 --step-pause 30s --pause-at 50
      ragops deploy --version v3 --set RAG_FAULT_ERROR_RATE=0.3 --yes   (fault injection: refused by its smoke test)
      ragops deploy --version v2 --strategy canary --on-inconclusive fail --yes   (no data fails instead of pausing)
      ragops deploy --version v2 --strategy shadow --duration 2m --mirror-percent 20 --yes
      ragops deploy --version v2 --strategy shadow --duration 2m --then blue-green --yes
      ragops -e docker deploy --version v2 --build --yes   (build the image on every host, then deploy)
    """
    env = ctx.obj
    from ragops.deploy import engine
    from ragops.errors import UsageError

    config = env.config
    if resume_:
        if engine.resumable(config) is None:
            raise UsageError(f"nothing to resume: no deploy is in progress, paused or interrupted in {config.env_name}")
        if plan_only:
            raise UsageError("--plan does not combine with --resume (ragops status shows the interrupted deploy)")
        env.confirm(f"Resume the interrupted deploy in {config.env_name}?", destructive=True)
        result = engine.resume(config, progress=env.progress("deploy"))
        env.emit(result, _render_result)
        return
    if not version:
        raise UsageError("--version is required (or --resume)")
    check_version_label(version, "--version")
    weights, pause = _canary_options(steps, step_pause)
    if on_inconclusive not in (None, "pause", "fail"):
        raise UsageError(f"--on-inconclusive: expected pause or fail, got {on_inconclusive!r}")
    overrides = _parse_env(set_env)
    if build_first:
        from ragops.platforms.docker_build import require_docker

        require_docker(config, "--build")
    if strategy == "shadow" or duration is not None or mirror_writes or then is not None:
        if build_first:
            raise UsageError("--build: not with --strategy shadow; build first with `ragops build --version V`")
        _shadow(env, version, strategy, duration, mirror_percent, mirror_writes, then, overrides, plan_only)
        return
    from ragops.config_checks import check_service_path
    from ragops.platforms import platform_class

    # its migrations are the deploy's gate: a missing folder is a config error
    check_service_path(config, required=platform_class(config).runs_migrations_in_preflight)
    plan = engine.plan(config, version, strategy, weights, pause, pause_at, overrides)
    if build_first:
        plan.plan.insert(0, f"build {version} on every host (ragops build --version {version})")
    if plan_only:
        env.emit(plan, lambda p: _plan_text(p, config.env_name))
        return
    title = f"deploy {version} to {config.env_name} ({plan.strategy}, {plan.from_color or 'none'} -> {plan.to_color})"
    env.confirm(f"{'Build and deploy' if build_first else 'Deploy'} {version} to {config.env_name} "
                f"with {plan.strategy}?", destructive=True)
    if build_first:
        from ragops.platforms.docker_build import build as build_image

        built = build_image(config, version, progress=env.progress("build"))
        env.status(f"built {built.image} on {len(built.hosts)} host(s) in {built.seconds:.1f}s")
    with LiveView(env, title) as progress:
        result = engine.deploy(config, version, strategy, weights, pause, pause_at, overrides, progress=progress,
                               on_inconclusive=on_inconclusive)
    env.emit(result, _render_result)


def _plan_text(p, env_name: str) -> str:
    """`deploy --plan` for every strategy: a title line, then the numbered steps."""
    return "\n".join([f"plan: {p.strategy} deploy of {p.version} to {env_name} ({p.from_color or 'none'} -> {p.to_color})"]
                     + [f"  {i + 1}. {line}" for i, line in enumerate(p.plan)])


def _canary_options(steps: str | None, step_pause: str | None) -> tuple[list[int] | None, float | None]:
    """--steps and --step-pause parsed (None when not given)."""
    from ragops.bounds import CLI_STEP_PAUSE_MAX_S, at_most
    from ragops.durations import parse_duration
    from ragops.errors import UsageError

    weights = None
    if steps is not None:
        try:
            weights = [int(s) for s in steps.split(",") if s.strip()]
        except ValueError:
            weights = []
        if not weights:   # "" or "," is a mistake, not "use the configured steps"
            raise UsageError(f"--steps: expected comma-separated weights like 10,25,50,100, got {steps!r}")
    pause = None
    if step_pause is not None:
        try:
            pause = at_most(parse_duration(step_pause), CLI_STEP_PAUSE_MAX_S)
        except ValueError as exc:
            raise UsageError(f"--step-pause: {exc}") from None
    return weights, pause


def _shadow(env, version: str, strategy: str | None, duration: str | None, mirror_percent: int,
            mirror_writes: bool, then: str | None, overrides: dict[str, str], plan_only: bool) -> None:
    """`deploy --strategy shadow`: the options are checked before anything is asked or changed."""
    from ragops.bounds import CLI_SHADOW_DURATION_MAX_S, at_most
    from ragops.deploy import shadow_run
    from ragops.deploy.shadow import ShadowSettings
    from ragops.durations import parse_duration
    from ragops.errors import UsageError

    if strategy != "shadow":
        raise UsageError("--duration, --mirror-writes and --then apply to --strategy shadow only")
    if duration is None:
        raise UsageError("--strategy shadow needs --duration (how long the shadow color is analysed, e.g. 2m)")
    try:
        seconds = at_most(parse_duration(duration), CLI_SHADOW_DURATION_MAX_S)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    config = env.config
    settings = ShadowSettings(duration=seconds, mirror_percent=mirror_percent, mirror_writes=mirror_writes,
                              then=then).validate()
    plan = shadow_run.plan(config, version, settings, overrides)
    if plan_only:
        env.emit(plan, lambda p: _plan_text(p, config.env_name))
        return
    title = f"shadow deploy {version} to {config.env_name} ({settings.describe()}, {plan.from_color} -> {plan.to_color})"
    env.confirm(f"Shadow-deploy {version} to {config.env_name} ({settings.describe()} mirrored)?", destructive=True)
    with LiveView(env, title) as progress:
        result = shadow_run.deploy(config, version, settings, overrides, progress=progress)
    env.emit(result, _render_result)


def rollback(ctx: typer.Context,
             to: str | None = typer.Option(None, "--to", help="Version to go back to (default: the one before the live one)."),
             resume_: bool = typer.Option(False, "--resume", help="Finish an interrupted rollback from its journal.")) -> None:
    """Go back to the previous version: an instant router flip when its color is still warm.

    Example: ragops rollback --yes
    """
    run_rollback(ctx.obj, to, resume_)   # `ragops rollback` itself usually runs without typer: ragops.cli.fast_path


def promote(ctx: typer.Context) -> None:
    """Continue a canary paused with --pause-at through its remaining steps.

    Example: ragops promote --yes
    """
    env = ctx.obj
    from ragops.deploy import engine

    env.confirm(f"Continue the paused canary in {env.config.env_name}?", destructive=True)
    env.emit(engine.promote(env.config, progress=env.progress("promote")), _render_result)


def abort(ctx: typer.Context) -> None:
    """Abort the running, paused or interrupted deploy: traffic back to the live color.

    Example: ragops abort --yes
    """
    env = ctx.obj
    from ragops.deploy import engine

    env.confirm(f"Abort the deploy in progress in {env.config.env_name}?", destructive=True)
    env.emit(engine.abort(env.config, progress=env.progress("abort")), _render_result)


def history(ctx: typer.Context, limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000, help="How many entries.")) -> None:
    """Past deploys: version, strategy, who, when, result, measured analysis values.

    Example: ragops history -n 5 --output json
    """
    env = ctx.obj
    from ragops.deploy import engine

    records = engine.history(env.config, limit)

    def render(rows):
        from rich.table import Table

        table = Table("id", "started", "who", "strategy", "from", "to", "result", "reason", box=None)
        for r in rows:
            if "event" in r:
                table.add_row("-", r.get("at", ""), r.get("by", ""), r["event"], "", "", "", "")
                continue
            table.add_row(r.get("id", ""), r.get("started", "")[:19], r.get("who", ""), r.get("strategy", ""),
                          r.get("from_version") or "-", r.get("version", ""), r.get("result", ""),
                          (r.get("reason") or "")[:60])
        return table if rows else "no deploys recorded yet"

    env.emit(records, render)


@lock_app.command("status")
def lock_status(ctx: typer.Context) -> None:
    """Who holds the deploy lock, since when, and whether the lease is still alive.

    Example: ragops lock status
    """
    env = ctx.obj
    from ragops.deploy.lock import describe, owner_alive
    from ragops.platforms import get_platform

    record = get_platform(env.config).lock_backend().read()
    data = {"held": bool(record), "alive": owner_alive(record) if record else False, "lock": record}
    env.emit(data, lambda d: "deploy lock: free" if not d["held"] else
             f"deploy lock: held by {describe(d['lock'])}" + ("" if d["alive"] else " (STALE: owner gone or lease expired)"))


@lock_app.command("break")
def lock_break(ctx: typer.Context) -> None:
    """Remove the deploy lock (audited in the history). Requires --yes.

    Example: ragops lock break --yes
    """
    env = ctx.obj
    from ragops.deploy import engine
    from ragops.errors import NotApproved

    if not env.yes:
        raise NotApproved("lock break needs --yes (it can let two deploys race)")
    broken = engine.break_lock(env.config)
    env.emit({"broken": broken}, lambda d: "deploy lock was free" if not d["broken"] else
             f"deploy lock of {d['broken'].get('owner')} broken (recorded in history)")


def smoke(ctx: typer.Context,
          color: str | None = typer.Option(None, "--color", help="Test one color directly (blue or green)."),
          url: str | None = typer.Option(None, "--url", help="Test this base URL instead.")) -> None:
    """The smoke suite: health, readiness, version, auth, security headers, document round trip.
    Exit 3 when a check fails.

    Example: ragops smoke --color green --output json
    """
    env = ctx.obj
    from ragops.errors import GateFailed, UsageError
    from ragops.smoke import run_smoke

    if color and color not in ("blue", "green"):
        raise UsageError(f"--color: expected blue or green, got {color!r}")
    report = run_smoke(env.config, url=url, color=color)

    def render(r):
        from rich.table import Table

        table = Table("check", "result", "ms", "detail", box=None, title=f"smoke {r.url}")
        for c in r.checks:
            table.add_row(c.name, "pass" if c.passed else "FAIL", f"{c.ms:.0f}", c.detail)
        return table

    env.emit(report, render)
    if not report.passed:
        raise GateFailed(f"smoke test of {report.url} failed: " + ", ".join(c.name for c in report.failed))
