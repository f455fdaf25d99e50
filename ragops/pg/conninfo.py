"""libpq connection strings (`key=value ...`): the one builder every ragops conninfo goes through.

libpq reads an unquoted value up to the next space, so a password with a space (or a quote, or a
backslash) must be single-quoted with `\\` and `'` escaped; a plain word is left as it is, so the
strings ragops has always written (and that other code compares) do not change.
"""
from __future__ import annotations

import re

_NEEDS_QUOTES = re.compile(r"[\s'\\]")


def quote(value: object) -> str:
    """One value as libpq reads it back unchanged."""
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(**params: object) -> str:
    """`key=value` pairs in the given order, each value quoted as needed; None values are left out."""
    return " ".join(f"{key}={quote(value)}" for key, value in params.items() if value is not None)
