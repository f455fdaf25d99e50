"""rag_ingest_queue_length and rag_ingest_oldest_job_age_seconds: the ingestion queue as the worker
HorizontalPodAutoscaler and the alert rules read it.

A background thread reads the queue every REFRESH_S seconds on a connection of its own (never the
request pool: a busy pool must not slow /metrics, which the deploy analysis reads). The collector
yields the snapshot only while it is fresh, so a database that stops answering makes the series
disappear ("no data") instead of repeating the last value as if the queue had stopped moving."""
from __future__ import annotations

import logging
import threading
import time

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY

from ragservice import db

FRESH_S = 10.0
REFRESH_S = 2.0
log = logging.getLogger("ragservice")


class QueueCollector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: tuple[int, float] | None = None
        self._taken = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, dsn: str) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(dsn,), name="queue-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, dsn: str) -> None:
        import psycopg

        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(dsn, connect_timeout=2, autocommit=True)
                snapshot = db.queue_depth(conn)
                with self._lock:
                    self._snapshot, self._taken = snapshot, time.monotonic()
            except Exception as exc:   # noqa: BLE001 - an unreadable queue is no data, never 0
                log.debug("queue metrics: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(REFRESH_S)
        if conn is not None:
            conn.close()

    def collect(self):
        with self._lock:
            snapshot, age = self._snapshot, time.monotonic() - self._taken
        if snapshot is None or age > FRESH_S:
            return
        length, oldest = snapshot
        yield GaugeMetricFamily("rag_ingest_queue_length", "Ingestion jobs waiting to be processed", value=length)
        yield GaugeMetricFamily("rag_ingest_oldest_job_age_seconds", "Age of the oldest waiting ingestion job",
                                value=oldest)


QUEUE = QueueCollector()
REGISTRY.register(QUEUE)
