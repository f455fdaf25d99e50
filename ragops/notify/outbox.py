"""Deploy and rollback notifications from a bounded background queue: a webhook never delays traffic.

The deploy engine puts its events here and goes on; one daemon thread posts them in order. A rollback
holds the queue until its router flip is confirmed (nothing competes with the flip). At its very end the
command waits at most `notify.timeout` for what is still queued and reports each event's outcome;
whatever was not delivered by then is named (and left behind: the process exits).
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

QUEUE_SIZE = 16          # a deploy sends a handful; more than this is a bug, dropped and reported


class Outbox:
    def __init__(self, config, progress: Callable[[str], None] | None = None, *, hold: bool = False):
        self.config = config
        self.progress = progress
        self.outcomes: list[dict] = []
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._released = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if not hold:
            self._released.set()

    def put(self, kind: str, name: str, message: str, fields: dict | None = None) -> None:
        """Queue one event if notify.on lists it; never blocks."""
        from ragops import notify

        if not notify.wanted(self.config, name):
            return
        outcome: dict = {"event": f"{kind}.{name}", "delivered": None, "error": None}
        with self._lock:
            self.outcomes.append(outcome)
        try:
            self._queue.put_nowait((outcome, kind, name, message, fields))
        except queue.Full:
            outcome.update(delivered=False, error="notification queue full: dropped")
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_all, name="ragops-notify", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """Start sending (a rollback calls it once its flip is confirmed)."""
        self._released.set()

    def _send_all(self) -> None:
        from ragops import notify

        self._released.wait()
        while True:
            item = self._queue.get()
            if item is None:   # finish() is done waiting: this sender ends (a long-lived process keeps no thread)
                self._queue.task_done()
                return
            outcome, kind, name, message, fields = item
            try:
                error = notify.deliver(self.config, kind, name, message, fields=fields)
                outcome.update(delivered=error is None, error=error)
            finally:
                self._queue.task_done()

    def finish(self, timeout: float) -> list[dict]:
        """Wait at most `timeout` seconds for the queue to empty; each event's outcome (undelivered
        ones say why)."""
        self.release()
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            results = [dict(o) for o in self.outcomes]
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)   # ends the sender after what it is delivering now
            except queue.Full:
                pass
        for o in results:
            if o["delivered"] is None:
                o.update(delivered=False, error=f"not delivered within notify.timeout ({timeout:g}s)")
        missed = [o for o in results if not o["delivered"]]
        if missed and self.progress:
            self.progress(f"notify: {len(missed)} of {len(results)} notification(s) not delivered: "
                          + "; ".join(f"{o['event']} ({o['error']})" for o in missed))
        return results
