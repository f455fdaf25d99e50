"""The deploy lock: a lease with an owner, a TTL and a heartbeat.

A second deploy while the lease is alive exits 4 naming the owner. A lease whose owner stopped
renewing (killed ragops) expires after its TTL; a dead owner on this same host is seen at once.
"""
from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from ragops.errors import LockHeld

# the token of the lease held by the operation this code runs inside (ragops.deploy.oplock sets it):
# an operation nested in it (a drill's restore, a runbook's deploy) runs under that lease instead
# of refusing itself; unrelated locks of one process (threads, tests) stay exclusive
OUTER_LEASE: ContextVar[str | None] = ContextVar("ragops_outer_lease", default=None)


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def owner_alive(record: dict) -> bool:
    """False when the lease expired, or its owner process is gone on this very host."""
    if record.get("paused"):
        return True  # a paused canary holds the lock until promote/abort, without a heartbeat
    if time.time() > float(record.get("expires_at", 0)):
        return False
    if record.get("host") == socket.gethostname() and record.get("pid"):
        try:
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def describe(record: dict) -> str:
    if record.get("paused"):
        # a paused canary: no process holds it, it waits for `ragops promote` or `ragops abort`
        return (f"{record.get('owner')} (paused canary {record.get('deploy_id')}, no process: "
                f"`ragops promote` continues, `ragops abort` undoes; since {record.get('created')})")
    return (f"{record.get('owner')} (pid {record.get('pid')}, `{record.get('command')}`, "
            f"since {record.get('created')})")


class DeployLock:
    def __init__(self, backend, ttl: float, command: str, deploy_id: str | None = None, brief: bool = False):
        self.backend = backend
        self.brief = brief             # seconds, not minutes: others wait for it instead of exit 4
        self.ttl = ttl
        self.command = command
        self.deploy_id = deploy_id
        self.token = uuid.uuid4().hex
        self.nested = False            # acquired inside an operation of this process that holds it
        self.taken_over: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, paused: bool = False) -> dict:
        return {"token": self.token, "owner": whoami(), "host": socket.gethostname(), "pid": os.getpid(),
                "command": self.command, "deploy_id": self.deploy_id, "created": _now_iso(),
                "expires_at": time.time() + self.ttl, "ttl": self.ttl, "paused": paused, "brief": self.brief}

    def acquire(self, *, take_over_deploy: str | None = None, journaled: str | None = None) -> DeployLock:
        """Take the lease. A stale lease, or one held by the deploy we are resuming, is replaced.

        `journaled` is the id of the deploy the journal says is in progress (None: no journal). A
        stale lease of that deploy is left for resume/abort; a stale lease whose deploy never wrote
        a journal (killed between the two) has nothing to resume and is taken over: `taken_over`
        then holds the old record, for the caller to write down.
        """
        self.taken_over = None
        self.nested = False
        record = self._record()
        if self.backend.create(record):
            self._start_heartbeat()
            return self
        current = self.backend.read() or {}
        if current.get("token") and current.get("token") == OUTER_LEASE.get():
            self.nested = True      # released by the operation that took it
            return self
        resumable = take_over_deploy and current.get("deploy_id") == take_over_deploy
        if not resumable and owner_alive(current):
            raise LockHeld(f"deploy lock is held by {describe(current)}",
                           hint="wait for it, or if that deploy is dead: ragops lock break --yes")
        if not resumable and current.get("deploy_id") and current.get("deploy_id") == journaled:
            raise LockHeld(f"an interrupted deploy {current.get('deploy_id')} still holds the lock "
                           f"({describe(current)})",
                           hint="finish it with `ragops deploy --resume` or undo it with `ragops abort`")
        if not self.backend.replace(current.get("token", ""), record):
            raise LockHeld("deploy lock changed hands while taking it over; try again")
        self.taken_over = current if current and not resumable else None
        self._start_heartbeat()
        return self

    def _start_heartbeat(self) -> None:

        def beat() -> None:
            while not self._stop.wait(max(1.0, self.ttl / 3)):
                current = self.backend.read() or {}
                if current.get("token") != self.token:
                    return  # broken by someone else: stop renewing
                self.backend.replace(self.token, {**current, "expires_at": time.time() + self.ttl})
        self._thread = threading.Thread(target=beat, daemon=True, name="deploy-lock-heartbeat")
        self._thread.start()

    def pause(self) -> None:
        """Keep the lock after this process exits (a paused canary), until promote or abort."""
        if self.nested:
            return      # the outer operation's lease: it ends with that operation
        self._stop.set()
        current = self.backend.read() or {}
        if current.get("token") == self.token:
            self.backend.replace(self.token, {**current, "paused": True, "pid": None})

    def name_deploy(self, deploy_id: str) -> None:
        """Write the id of the deploy or rollback this lease now belongs to (decided under the lease)."""
        self.deploy_id = deploy_id
        current = self.backend.read() or {}
        if not self.nested and current.get("token") == self.token:
            self.backend.replace(self.token, {**current, "deploy_id": deploy_id})

    def held(self) -> bool:
        """Whether the lease is still this lock's (False once broken or taken over by another)."""
        if self.nested:
            return True
        return (self.backend.read() or {}).get("token") == self.token

    def release(self) -> None:
        if self.nested:
            return
        self._stop.set()
        self.backend.delete(self.token)

    def __enter__(self) -> DeployLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
