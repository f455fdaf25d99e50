"""`python -m ragservice.worker`: chunks and embeds documents posted with ?async=true.

Jobs are rows in ingest_jobs, claimed with FOR UPDATE SKIP LOCKED, so any number of workers
can run side by side. SIGTERM lets the current job finish, then the worker exits 0.
With RAG_WORKER_HEARTBEAT=<file> the worker touches that file on every turn of its loop (also
while it backs off from a lost database), so a liveness probe can tell a stuck worker by its age.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ragservice import db
from ragservice.config import Settings

log = logging.getLogger("ragservice.worker")


def beat(path: str | None) -> None:
    """Touch the heartbeat file; a failure is logged, not fatal (the probe then restarts us)."""
    if not path:
        return
    try:
        Path(path).touch()
    except OSError as exc:
        log.warning("cannot touch the heartbeat file %s: %s", path, exc.strerror)


def main() -> int:
    from ragservice.logs import configure

    configure(os.environ.get("RAG_LOG_LEVEL", "info"))   # JSON or text (RAG_LOG_FORMAT), secrets redacted
    settings = Settings.from_env()
    if not settings.database_url:
        print("error: RAG_DATABASE_URL is not set", file=sys.stderr)
        return 2
    poll = float(os.environ.get("RAG_WORKER_POLL_SECONDS", "0.5"))
    heartbeat = os.environ.get("RAG_WORKER_HEARTBEAT")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    pool = db.Pool(settings.database_url, size=1)
    backoff = poll
    log.info("worker started (%s, %s)", settings.version, settings.color)
    while not stop.is_set():
        beat(heartbeat)
        try:
            done = db.process_next_job(pool)
        except Exception as exc:  # noqa: BLE001 - a worker outlives a lost primary or a missing schema
            # back off; the pool reconnects (to whichever node is primary) on the next try
            log.warning("cannot process jobs: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        backoff = poll
        if done:
            log.info("ingested document %s", done)
        else:
            stop.wait(poll)
    pool.close()
    log.info("worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
