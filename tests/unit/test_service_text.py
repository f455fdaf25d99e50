"""Chunking, hashed embeddings and extractive answers of the bundled service (no database)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"
sys.path.insert(0, str(SERVICE_DIR))

from ragservice import text  # noqa: E402


def test_embedding_is_normalised_and_deterministic_across_processes():
    vector = text.embed("Liquid sodium cools the reactor core")
    assert len(vector) == text.DIMS
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
    # Python's hash() is salted per process; the embedding must not be
    code = "from ragservice import text; print(text.embed('Liquid sodium cools the reactor core')[:8])"
    other = subprocess.run([sys.executable, "-c", code], cwd=SERVICE_DIR, capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(SERVICE_DIR)}, check=True)
    assert other.stdout.strip() == str(vector[:8])


def test_embedding_of_nothing_is_zero():
    assert text.embed("") == [0.0] * text.DIMS
    assert text.embed("the of and") == [0.0] * text.DIMS   # only stop words


def test_similar_texts_score_higher():
    query = text.embed("what cools the reactor")
    close = text.embed("The reactor is cooled by liquid sodium")
    far = text.embed("Honey bees dance to share where flowers are")
    assert text.cosine(query, close) > text.cosine(query, far)


def test_bigrams_distinguish_word_order():
    assert text.cosine(text.embed("dog bites man"), text.embed("man bites dog")) < 0.999


def test_sentences_split_on_punctuation_and_paragraphs():
    assert text.sentences("One. Two? Three!\n\nFour\nstill four.") == ["One.", "Two?", "Three!", "Four still four."]


def test_chunks_respect_the_size_and_keep_every_sentence():
    body = " ".join(f"Sentence number {i} is here." for i in range(100))
    chunks = text.chunk(body, max_chars=200)
    assert len(chunks) > 5
    assert all(len(c) <= 200 for c in chunks)
    joined = " ".join(chunks)
    assert all(f"Sentence number {i} is here." in joined for i in range(100))


def test_chunks_overlap_by_one_sentence():
    body = " ".join(f"Fact {i} holds." for i in range(40))
    first, second = text.chunk(body, max_chars=100)[:2]
    assert first.split(". ")[-1].rstrip(".") in second


def test_a_giant_sentence_is_split_on_words():
    chunks = text.chunk("word " * 1000, max_chars=100)
    assert all(0 < len(c) <= 100 for c in chunks)
    assert sum(c.count("word") for c in chunks) >= 1000


def test_short_document_is_one_chunk():
    assert text.chunk("Just one line.") == ["Just one line."]
    assert text.chunk("   ") == []


def test_answer_picks_the_sentence_with_the_fact():
    passages = ["The visitor centre opens at nine. The Zephyr reactor is cooled by liquid sodium. "
                "Parking is free.", "Reactors elsewhere use water."]
    assert text.answer("What cools the Zephyr reactor?", passages, max_sentences=1) == \
        "The Zephyr reactor is cooled by liquid sodium."
    both = text.answer("What cools the Zephyr reactor?", passages, max_sentences=2)
    assert both.startswith("The Zephyr reactor is cooled by liquid sodium.")


@pytest.mark.parametrize("query", ["", "the of", "unrelated kangaroo"])
def test_no_answer_without_common_words(query):
    assert text.answer(query, ["The reactor is cooled by liquid sodium."]) == ""


def test_answer_does_not_repeat_overlapping_sentences():
    passages = ["Biscuit is the cat. It sleeps.", "Biscuit is the cat. It eats."]
    assert text.answer("cat Biscuit", passages, max_sentences=2).count("Biscuit is the cat.") == 1
