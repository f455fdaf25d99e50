"""Chunking, offline embeddings and extractive answers.

Embeddings are hashed bags of words (tokens + bigrams): no model download, deterministic across
processes and machines (blake2b, never Python's salted hash()), L2-normalised so a dot product
is the cosine similarity.
"""
from __future__ import annotations

import hashlib
import math
import re

DIMS = 256
BIGRAM_WEIGHT = 0.5

# dropping the commonest words keeps them from dominating short vectors
STOPWORDS = frozenset("""
a an and are as at be by for from has have in is it its of on or that the this to was were
will with what which who whom when where why how do does did i you he she we they me my our your
their there here than then so if not no but can could should would into about over under
""".split())

_TOKEN = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*[-*•]\s)")


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.casefold()) if t not in STOPWORDS]


def _bucket(feature: str, dims: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    # a sign bit spreads collisions around zero instead of piling them up
    return value % dims, (1.0 if (value >> 63) & 1 else -1.0)


def embed(text: str, dims: int = DIMS) -> list[float]:
    """A hashed bag-of-words vector (tokens + bigrams), L2-normalised; all zeros for no words."""
    vector = [0.0] * dims
    words = tokens(text)
    features = [(w, 1.0) for w in words]
    features += [(f"{a} {b}", BIGRAM_WEIGHT) for a, b in zip(words, words[1:])]
    for feature, weight in features:
        index, sign = _bucket(feature, dims)
        vector[index] += sign * weight
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return vector
    return [v / norm for v in vector]


def cosine(a: list[float], b: list[float]) -> float:
    """Dot product of two normalised vectors."""
    return sum(x * y for x, y in zip(a, b))


def sentences(text: str) -> list[str]:
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    return [" ".join(p.split()) for p in parts if p and p.strip()]


def chunk(text: str, max_chars: int = 800, overlap: int = 1) -> list[str]:
    """Pack whole sentences into chunks of at most max_chars; the last `overlap` sentences of a
    chunk start the next one so a fact split across a boundary is still found."""
    pieces: list[str] = []
    for sentence in sentences(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        # a sentence longer than a chunk: split on word boundaries
        words, current = sentence.split(), ""
        for word in words:
            if current and len(current) + 1 + len(word) > max_chars:
                pieces.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            pieces.append(current)

    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(" ".join(current + [piece])) > max_chars:
            chunks.append(" ".join(current))
            carried = current[-overlap:] if overlap else []
            current = carried if len(" ".join(carried + [piece])) <= max_chars else []
        current.append(piece)
    if current:
        chunks.append(" ".join(current))
    return chunks


def answer(query: str, passages: list[str], max_sentences: int = 2) -> str:
    """The extractive answer: the passages' sentences that best match the query, best first.

    A sentence scores by the share of the query's words it contains plus its vector similarity,
    so an exact fact beats a merely related one. Sentences with no word in common are ignored.
    """
    query_words = set(tokens(query))
    if not query_words:
        return ""
    query_vec = embed(query)
    scored: list[tuple[float, int, str]] = []
    seen: set[str] = set()
    for order, sentence in enumerate(s for p in passages for s in sentences(p)):
        if sentence in seen:   # overlapping chunks repeat sentences
            continue
        seen.add(sentence)
        overlap = len(query_words & set(tokens(sentence)))
        if overlap == 0:
            continue
        score = overlap / len(query_words) + cosine(query_vec, embed(sentence))
        scored.append((score, -order, sentence))
    scored.sort(reverse=True)
    return " ".join(s for _, _, s in scored[:max_sentences])
