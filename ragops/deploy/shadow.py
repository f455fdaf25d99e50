"""The shadow strategy: try a version on a copy of live traffic, users never get its answers.

`ragops deploy --strategy shadow --version V --duration 2m [--mirror-percent 20] [--mirror-writes]
[--then blue-green]`. After the usual lock, preflight and start of the idle color (readiness and
smoke), the router copies a share of the live requests to it (a Router capability, routing/base.py
Mirror: Traefik's `mirroring` service); its answers are dropped. The metric analysis runs on the
shadow color for the duration, the mirror is removed, and then the shadow color is stopped (or,
with `then: blue-green`, the deploy goes on as a normal blue-green deploy of V).

Only GET/HEAD are mirrored unless `writes`: the colors share one database, so a mirrored POST,
PUT, PATCH or DELETE would be applied twice.

Phases (journaled like the others, see states.py): lock, preflight, start, smoke, `mirror` (mirror
on, confirmed by the router), `shadow-analysis`, `mirror-off` (verdict journaled, mirror removed),
then `stop-shadow` and finish, or blue-green's `switched`/`analysis`/`drain`. Resume runs the same
flow: every step checks the record and the platform first. `ragops abort` removes the mirror
before it stops the shadow color (abort_hook).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ragops.deploy.deployment import DeploymentBase, DeployResult
from ragops.durations import format_duration
from ragops.errors import GateFailed, UsageError
from ragops.routing.base import Mirror, Router

if TYPE_CHECKING:
    from ragops.deploy.engine import Deployment

STRATEGY = "shadow"
THEN = ("blue-green",)
MIRROR_CONFIRM_TIMEOUT = 10.0


@dataclass(frozen=True)
class ShadowSettings:
    """How a shadow deploy mirrors and for how long (journaled in the record's options)."""
    duration: float
    mirror_percent: int = 100
    mirror_writes: bool = False
    then: str | None = None            # None: stop the shadow color after; "blue-green": deploy it

    def validate(self) -> ShadowSettings:
        if not 1 <= self.mirror_percent <= 100:
            raise UsageError(f"--mirror-percent: {self.mirror_percent} is outside 1..100")
        if self.duration <= 0:
            raise UsageError("--duration: must be above 0 (how long the shadow color is analysed)")
        if self.then is not None and self.then not in THEN:
            raise UsageError(f"--then: expected {' or '.join(THEN)}, got {self.then!r}")
        return self

    def mirror(self, color: str) -> Mirror:
        return Mirror(color=color, percent=self.mirror_percent, writes=self.mirror_writes)

    def describe(self) -> str:
        what = "all requests" if self.mirror_writes else "read requests (GET/HEAD)"
        return f"{self.mirror_percent}% of {what}"

    @classmethod
    def of(cls, record: dict) -> ShadowSettings:
        data: dict[str, Any] = (record.get("options") or {}).get(STRATEGY) or {}
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return asdict(self)


def routers_of(platform) -> list[Router]:
    """The routers a mirror goes to (every host's on a multi-host platform). Raises UsageError when one
    of them cannot mirror (naming it)."""
    routers = platform.routers()
    if not routers or not all(isinstance(r, Router) for r in routers):
        raise UsageError(f"the {platform.name} platform has no router ragops can mirror traffic on")
    for router in routers:
        router.check_mirroring()
    return [r for r in routers if isinstance(r, Router)]


def plan_lines(settings: ShadowSettings, new: str, live: str, version: str, describe_gates: str) -> list[str]:
    """The shadow part of `deploy --plan` (after lock, preflight, start, readiness and smoke)."""
    lines = [f"mirror {settings.describe()} from {live} to {new}: clients only get {live}'s answers"
             + ("" if settings.mirror_writes else "; writes are not mirrored (they would be applied twice)"),
             f"analysis of {new} on the mirrored traffic for {format_duration(settings.duration)}: {describe_gates}",
             f"remove the mirror (confirmed by the router); on a breach stop {new}: {live} was never touched"]
    if settings.then == "blue-green":
        lines += [f"then blue-green: switch the router to {new} 100%, analysis, drain {live}"]
    else:
        lines += [f"stop {new} (the shadow color); report the measured values in the history"]
    return lines


# ---- the flow -----------------------------------------------------------------------------------

def set_mirror(d: DeploymentBase, routers: list[Router], mirror: Mirror | None, label: str) -> float:
    """Write the mirror to every router (intent journaled before), confirm each; seconds it took."""
    def do() -> float:
        for router in routers:
            router.set_mirror(mirror)
        return max(router.confirm_mirror(mirror, MIRROR_CONFIRM_TIMEOUT) for router in routers)

    took = d.change("mirror", do, mirror=asdict(mirror) if mirror else None)
    d.step(label, True, f"router confirmed in {took * 1000:.0f}ms",
           data={"ms": round(took * 1000, 1), "mirror": asdict(mirror) if mirror else None})
    return took


def _mirror_off(d: DeploymentBase, routers: list[Router], color: str) -> None:
    if d.resumed and all(r.mirror() is None for r in routers):
        d.step("mirror off", True, "the router mirrors nothing (read back from its config)")
        return
    set_mirror(d, routers, None, f"mirror to {color} removed")


def run(d: Deployment) -> DeployResult:
    """The shadow flow after preflight (Deployment.run dispatches here); idempotent on resume."""
    settings = ShadowSettings.of(d.record)
    new, old = d.record["to_color"], d.record.get("from_color")
    if not old:
        d._refuse(f"preflight: a shadow deploy mirrors the live color's traffic, and no color serves any; "
                  f"deploy {d.options.version} with --strategy blue-green")
    routers = routers_of(d.platform)
    verdict = d.record.get("shadow_verdict")
    if verdict is None:
        d.start_new(new)
        d.phase("mirror")
        d.platform.refresh_backends()     # the router lists the shadow color (at weight 0)
        set_mirror(d, routers, settings.mirror(new), f"mirror {settings.describe()} to {new}")
        d.phase("shadow-analysis")
        result = d.watch(new, settings.duration, f"shadow analysis of {new}", gate=f"analysis:{new}@shadow")
        verdict = ("aborted" if d.aborted_by_request() else "passed" if result.passed
                   else "; ".join(result.breaches) or "no verdict")
        d.record["shadow"] = {**settings.as_dict(), "analysis": result.summary()}
        d.phase("mirror-off", shadow_verdict=verdict)
    _mirror_off(d, routers, new)
    if verdict == "aborted":
        d._discard(new)
        d.journal.clear_request()
        return d.finish("aborted", "aborted on request")
    if verdict != "passed":
        if d.ours(new):
            d._discard(new)
        d.finish("failed", f"shadow analysis of {d.options.version}: {verdict}")
        raise GateFailed(f"shadow {d.options.version} failed its analysis: {verdict}",
                         hint=f"{old} was never touched; ragops history --output json shows the measured values")
    if settings.then == "blue-green":
        d.step("shadow passed", True, f"going on as a blue-green deploy of {d.options.version}")
        return d.blue_green()
    d.phase("stop-shadow")
    if d.ours(new):
        d._discard(new)
    return d.finish("succeeded", f"shadow analysis of {d.options.version} passed; {new} stopped, "
                                 f"{old} untouched")


def abort_hook(d: DeploymentBase) -> None:
    """`ragops abort` of a shadow deploy: the mirror goes before the shadow color is stopped."""
    if d.record.get("strategy") != STRATEGY:
        return
    routers = routers_of(d.platform)
    if any(r.mirror() is not None for r in routers):
        set_mirror(d, routers, None, "mirror removed")
