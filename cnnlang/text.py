"""Small helpers for the sentences cnnlang prints."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``1 filter``: a count and its noun, in the right number."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
