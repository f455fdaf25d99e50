"""/readyz that answers under load: one check at a time, on its own thread and connection.

Why: /readyz ran its database check in Starlette's shared thread pool with a connection from the
request pool. Under 200 concurrent queries it queued behind them for seconds, the router's health
check (timeout 1 s) failed, and the router took the only live color out: 503 for everybody.
Here a check runs on a dedicated thread with a dedicated connection; concurrent probes share the
check in flight; a probe that would wait longer than ANSWER_WITHIN gets the last completed result
while it is younger than STALE_AFTER (the database is slow, not gone), else "not ready".
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time

ANSWER_WITHIN = 0.5     # seconds a probe waits for a fresh check
STALE_AFTER = 5.0       # a completed result older than this is not given out


class ReadinessCheck:
    def __init__(self, check, expected: int):
        self.check = check                      # () -> (ready, reason, version, newest)
        self.expected = expected
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="readyz")
        self.running: asyncio.Future | None = None
        self.last: tuple | None = None
        self.last_at = float("-inf")

    def _run(self) -> tuple:
        result = self.check()
        self.last, self.last_at = result, time.monotonic()
        return result

    async def result(self) -> tuple:
        if self.running is None or self.running.done():
            self.running = asyncio.get_running_loop().run_in_executor(self.executor, self._run)
        try:
            return await asyncio.wait_for(asyncio.shield(self.running), ANSWER_WITHIN)
        except asyncio.TimeoutError:
            age = time.monotonic() - self.last_at
            if self.last is not None and age < STALE_AFTER:
                return self.last
            return False, f"the readiness check has not answered for {ANSWER_WITHIN:.1f}s", None, self.expected

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
