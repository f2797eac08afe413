"""Lexicon sentiment (VADER): the same scorer ingestion uses, so a batch re-score can be
compared with what ingestion stored."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _analyzer() -> Any:
    # Loading the lexicon takes ~0.1 s: once per process, and never at DAG parse time.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

    return SentimentIntensityAnalyzer()


def score(text: str) -> float:
    """VADER's compound score in [-1, 1]."""
    return float(_analyzer().polarity_scores(text)["compound"])
