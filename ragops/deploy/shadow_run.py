"""Entry points of a shadow deploy (the CLI and runbooks call these): plan and deploy.

Apart from ragops/deploy/shadow.py (the flow, which engine.Deployment dispatches to) because these
build on the engine's Deployment and plan.
"""
from __future__ import annotations

from ragops.config import Config
from ragops.deploy import engine
from ragops.deploy.deployment import DeployOptions, DeployResult
from ragops.deploy.shadow import STRATEGY, ShadowSettings, plan_lines, routers_of
from ragops.errors import UsageError
from ragops.events import Progress, ignore
from ragops.platforms import get_platform


def _options(config: Config, version: str, env: dict | None) -> DeployOptions:
    return DeployOptions(version=version, strategy=STRATEGY, steps=[100], step_pause=0, env=dict(env or {}),
                         on_inconclusive="fail")


def plan(config: Config, version: str, settings: ShadowSettings, env: dict | None = None) -> DeployResult:
    """The ordered steps; changes nothing. Refuses (exit 2) a router that cannot mirror, and an
    environment where no color serves traffic (there is nothing to mirror)."""
    settings.validate()
    routers_of(get_platform(config))
    base = engine.plan(config, version, "blue-green", env=env)
    if base.from_color is None:
        raise UsageError("--strategy shadow: no color serves traffic, so there is nothing to mirror",
                         hint=f"deploy {version} with --strategy blue-green first")
    from ragops.deploy.analysis import get_provider

    base.strategy = STRATEGY
    # lock, preflight, start, readiness, smoke are blue-green's; then the shadow steps
    base.plan = base.plan[:5] + plan_lines(settings, base.to_color or "-", base.from_color, version,
                                           get_provider(config).describe())
    return base


def deploy(config: Config, version: str, settings: ShadowSettings, env: dict | None = None,
           progress: Progress = ignore) -> DeployResult:
    settings.validate()
    config.resolve_references(*engine.NEEDED_SECRETS)   # before anything is stopped or written
    platform = get_platform(config)
    routers_of(platform)
    engine.refuse_if_unfinished(platform)
    platform.check_release(version)
    deployment = engine.Deployment(config, _options(config, version, env), progress, platform)
    deployment.record["options"][STRATEGY] = settings.as_dict()
    return deployment.run()
