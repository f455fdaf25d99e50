"""The db verbs when Patroni is in charge: switchover, failover (promote), rejoin, pause/resume and
the DCS settings, all through Patroni's REST API (authenticated, loopback). ragops never promotes a
node itself here: two authorities over one cluster would be a split brain waiting to happen.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ragops.errors import ConfigError, GateFailed, OperationFailed
from ragops.events import Say
from ragops.events import quiet as _noop
from ragops.ha import patroni

#: what `db ha config` may change, with the type each takes
TUNABLE = {"ttl": int, "loop_wait": int, "retry_timeout": int, "maximum_lag_on_failover": int,
           "synchronous_mode": bool, "synchronous_mode_strict": bool}


@dataclass
class HaResult:
    action: str
    node: str
    previous_leader: str | None
    seconds: float
    detail: str = ""
    steps: list[str] = field(default_factory=list)


def _members(config) -> dict[str, dict]:
    return {m["name"]: m for m in (patroni.cluster(config) or {}).get("members", [])}


def _check_candidate(config, node: str) -> str:
    patroni.find(config, node)
    leader = patroni.leader(config)
    if leader is None:
        return ""
    if node == leader:
        raise ConfigError(f"{node} is already the leader")
    state = _members(config).get(node, {}).get("state")
    if state not in ("running", "streaming"):
        raise OperationFailed(f"{node} is not a running replica (Patroni state: {state or 'unknown'})")
    return leader


def switchover(config, node: str, timeout: float = 60, progress: Say = _noop) -> HaResult:
    """Patroni's switchover: the leader stops cleanly, `node` (fully replayed) takes over, the old
    leader follows it; 0 rows lost."""
    leader = _check_candidate(config, node)
    if not leader:
        raise OperationFailed("no running leader to switch over from", hint="ragops db promote NODE --force")
    started = time.monotonic()
    progress(f"asking Patroni to switch over from {leader} to {node}")
    answer = _ask(config, "switchover", {"leader": leader, "candidate": node}, node, timeout, progress)
    _wait_leader(config, node, timeout)
    return HaResult("switchover", node, leader, round(time.monotonic() - started, 2), str(answer))


def failover(config, node: str, *, force: bool = False, timeout: float = 60, progress: Say = _noop) -> HaResult:
    """Patroni's failover to `node`: refused while a healthy leader runs, unless `force`."""
    leader = patroni.leader(config)
    if leader == node:
        raise ConfigError(f"{node} is already the leader")
    patroni.find(config, node)
    if leader is not None and not force:
        raise GateFailed(f"{leader} is a healthy leader: refusing to promote {node}",
                         hint=f"a planned change is `ragops db switchover {node}`; --force promotes anyway")
    started = time.monotonic()
    progress(f"asking Patroni to fail over to {node}")
    body = _ask(config, "failover", {"candidate": node}, node, timeout, progress)
    _wait_leader(config, node, timeout)
    return HaResult("failover", node, leader, round(time.monotonic() - started, 2), str(body))


def _ask(config, action: str, body: dict, node: str, timeout: float, progress: Say) -> object:
    """POST /switchover or /failover. A 503 "failed to write failover key into DCS" means the
    Patroni that answered could not reach etcd in time (one member frozen or partitioned: its client
    waits on it before moving on), not a refusal: ask again, through the next node's API, until the
    timeout. Patroni's own refusals (412 and the like) end it at once."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        rest = patroni.rest_of(config, attempt)
        try:
            status, answer = rest.call("POST", f"/{action}", body, timeout=max(5.0, deadline - time.monotonic()))
        except OSError as exc:   # that node's API went away mid-call: the next one is asked
            status, answer = 0, str(exc)
        if status == 200:
            return answer
        if status not in (0, 503):
            raise OperationFailed(f"Patroni refused the {action} ({status}): {answer}")
        # 503 also reads "status unknown" when the change outlived Patroni's own wait, and a key
        # written late by a thawed member acts too: look before asking again
        try:
            return patroni.wait_for(lambda: _leads(config, node) and f"{node} leads", 3.0, f"{node} to lead")
        except OperationFailed:
            pass
        if time.monotonic() > deadline:
            raise OperationFailed(f"Patroni could not {action} within {timeout:.0f}s ({status}): {answer}")
        attempt += 1
        progress(f"{action}: Patroni could not write to etcd ({status}: {answer}); asking again")


def _leads(config, node: str) -> bool:
    member = _members(config).get(node, {})
    return member.get("role") == "leader" and member.get("state") == "running"


def _wait_leader(config, node: str, timeout: float) -> None:
    patroni.wait_for(lambda: _leads(config, node), timeout, f"{node} to lead")


def rejoin(config, node: str, timeout: float = 120, progress: Say = _noop) -> HaResult:
    """Make `node` a replica again: Patroni does it (pg_rewind, else a new clone) once its Patroni
    runs; start it when it does not."""
    from ragops.db.connect import db_password

    target = patroni.find(config, node)
    leader = patroni.leader(config)
    if leader == node:
        raise ConfigError(f"{node} is the leader; rejoin is for a former primary or a broken replica")
    started = time.monotonic()
    steps = []
    if not target.proc.running():
        progress(f"starting Patroni for {node} (it rewinds and follows {leader})")
        patroni.start_node(config, target, db_password(config))
        steps.append(f"start patroni {node}")
    patroni.wait_for(lambda: _members(config).get(node, {}).get("state") == "streaming", timeout,
                     f"{node} to stream from the leader")
    return HaResult("rejoin", node, leader, round(time.monotonic() - started, 2), "streaming", steps)


def set_pause(config, on: bool) -> dict:
    status, body = patroni.any_rest(config).call("PATCH", "/config", {"pause": on})
    if status != 200:
        raise OperationFailed(f"Patroni refused {'pause' if on else 'resume'} ({status}): {body}")
    patroni.wait_for(lambda: bool((patroni.cluster(config) or {}).get("pause")) == on, 15,
                     "Patroni to report the maintenance mode")
    return {"paused": on}


def read_config(config) -> dict:
    status, body = patroni.any_rest(config).call("GET", "/config")
    if status != 200 or not isinstance(body, dict):
        raise OperationFailed(f"could not read Patroni's DCS config ({status})")
    return body


def parse_changes(pairs: list[str]) -> dict:
    """KEY=VALUE pairs for the tunable settings, validated before anything changes."""
    changes: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in TUNABLE:
            raise ConfigError(f"db ha config: {pair!r}: expected KEY=VALUE with KEY one of {', '.join(TUNABLE)}")
        if TUNABLE[key] is bool:
            if raw.lower() not in ("true", "false"):
                raise ConfigError(f"db ha config: {key}: expected true or false, got {raw!r}")
            changes[key] = raw.lower() == "true"
        else:
            try:
                changes[key] = int(raw)
            except ValueError:
                raise ConfigError(f"db ha config: {key}: expected an integer, got {raw!r}") from None
    if changes.get("ttl", 20) < 20:
        raise ConfigError("db ha config: ttl: Patroni raises any ttl below 20 s to 20; use 20 or more")
    return changes


def plan_config(config, changes: dict) -> list[dict]:
    current = read_config(config)
    return [{"key": k, "from": current.get(k), "to": v} for k, v in changes.items() if current.get(k) != v]


def apply_config(config, changes: dict) -> dict:
    status, body = patroni.any_rest(config).call("PATCH", "/config", changes)
    if status != 200:
        raise OperationFailed(f"Patroni refused the change ({status}): {body}")
    return {k: body.get(k) for k in changes} if isinstance(body, dict) else {}
