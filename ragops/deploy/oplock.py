"""The operations lock: the deploy lock's lease, held by every command that changes the environment.

deploy, promote, abort, rollback (ragops/deploy/engine.py) and down, db switchover/promote/recover,
backup restore and drill run (their CLI commands, through `operation()`) take the same lease, so
two of them never interleave; read-only commands never take it. The holder is named in every
refusal (command, pid, user@host, since). A command waits (bounded) for a *brief* holder (a
switchover, a database promotion, a rollback: seconds) and refuses a long one (a deploy, a drill)
with exit 4 at once. An operation inside another one of the same process (a drill's restore, a
runbook's deploy) runs under the outer lease.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ragops.deploy.history import Journal
from ragops.deploy.lock import OUTER_LEASE, DeployLock, describe, owner_alive, whoami
from ragops.errors import LockHeld
from ragops.events import Progress, ignore, say

BRIEF_WAIT = 120.0      # the longest a command waits for a brief holder before exit 4
FORCED = "forced"       # the journal request a --force command leaves for the holder it overrode


def acquire(lock: DeployLock, journal: Journal, *, wait: float = BRIEF_WAIT, on_wait: Callable[[str], None] = lambda _: None,
            take_over_deploy: str | None = None) -> DeployLock:
    """`lock.acquire()`, waiting up to `wait` s while a live holder marked brief finishes."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        current = journal.current()
        try:
            return lock.acquire(take_over_deploy=take_over_deploy, journaled=current.get("id") if current else None)
        except LockHeld:
            holder = lock.backend.read() or {}
            if not (holder.get("brief") and owner_alive(holder)) or time.monotonic() >= deadline:
                raise
            if not told:
                on_wait(f"waiting (up to {wait:.0f}s) for {describe(holder)} to finish")
                told = True
            time.sleep(0.1)


@contextmanager
def operation(config, command: str, *, brief: bool = False, force: bool = False, past_dormant: bool = False,
              platform=None, progress: Progress = ignore) -> Iterator[DeployLock | None]:
    """Hold the operations lock for the block. `force`: a live holder is reported and the block
    runs anyway, without the lock (down --force). `past_dormant`: a lease no process runs under
    (a paused canary, an interrupted deploy) is left for its resume/abort and the block runs."""
    from ragops.platforms import get_platform

    platform = platform or get_platform(config)
    lock = DeployLock(platform.lock_backend(), config.deploy.lock_ttl, command, brief=brief)
    try:
        acquire(lock, Journal(platform.journal_dir()), on_wait=lambda text: say(progress, text))
    except LockHeld as exc:
        holder = lock.backend.read() or {}
        if past_dormant and (holder.get("paused") or not owner_alive(holder)):
            say(progress, f"{describe(holder)} holds no running process: its lease is left for "
                          "`ragops deploy --resume` / `ragops abort`")
            yield None
            return
        if not force:
            raise LockHeld(exc.message.replace("deploy lock is held", "the operations lock is held", 1),
                           hint=exc.hint or "wait for it to finish; `ragops status` shows what runs") from None
        say(progress, f"--force: going ahead although {exc.message}")
        # the holder (a deploy) reads this at its next phase and fails saying who stopped what
        Journal(platform.journal_dir()).request(FORCED, f"{whoami()} (`{command} --force`)")
        yield None
        return
    outer = OUTER_LEASE.set(lock.token)
    try:
        yield lock
    finally:
        OUTER_LEASE.reset(outer)
        lock.release()
