"""Retrieval fault injection for drills: a version that answers 200 with the wrong documents.

RAG_FAULT_RETRIEVAL=empty    every query finds nothing (rag_retrieval_queries_total{outcome="empty"})
RAG_FAULT_RETRIEVAL=shuffle  the scores found, attached to chunks drawn at random from the corpus: the
                             metrics look healthy, only golden queries (ragops smoke.golden) see it
Like the HTTP faults, it starts RAG_FAULT_AFTER_S seconds after start-up.
"""
from __future__ import annotations

import time

RETRIEVAL_FAULTS = ("", "empty", "shuffle")
_started = time.monotonic()


def retrieval(settings, results: list[dict], random_chunks=None) -> list[dict]:
    kind = settings.fault_retrieval
    if not kind or time.monotonic() < _started + settings.fault_after_s:
        return results
    if kind == "empty":
        return []
    if kind == "shuffle" and random_chunks is not None and results:
        drawn = random_chunks(len(results))
        return [{**chunk, "score": found["score"]} for chunk, found in zip(drawn, results, strict=False)]
    return results
