"""Burst detection: is a hashtag talked about more in this window than its past predicts?

The expected count `v` is the mean of the hashtag's counts in the previous windows (up
to `baseline_windows`, never before the first window ever counted). The test is the
Poisson one from the domain notes: eta = (c - v) / width, where width is the size of the
central 99% interval of Poisson(v); a hashtag trends when c > v, c >= min_count and
eta >= threshold. A plain z-score (c - v) / sqrt(v) would flag every rare tag that
appears twice; the interval width grows for small v in exactly the way that prevents it.

Everything here is a pure function of counts, so tests can recompute it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

_TAIL = 0.005  # each tail of the central 99% interval
_Z_995 = 2.5758293035489004  # normal quantile for the same tails, for large means
_EXACT_UP_TO = 400.0


@dataclass(frozen=True)
class DetectionConfig:
    baseline_windows: int = 12
    min_history: int = 3
    min_count: int = 10
    threshold: float = 1.0
    top_n: int = 10

    def __post_init__(self) -> None:
        if self.baseline_windows < 1 or not 1 <= self.min_history <= self.baseline_windows:
            raise ValueError("need baseline_windows >= 1 and 1 <= min_history <= baseline_windows")
        if self.min_count < 1 or self.threshold <= 0 or self.top_n < 1:
            raise ValueError("min_count, threshold and top_n must be positive")


@dataclass(frozen=True)
class Detected:
    hashtag: str
    count: int
    expected: float
    score: float
    rank: int


@lru_cache(maxsize=4096)
def poisson_interval_width(mean: float) -> float:
    """Width (upper - lower quantile) of the central 99% interval of Poisson(mean)."""
    if mean <= 0:
        return 0.0
    if mean > _EXACT_UP_TO:
        return 2 * _Z_995 * math.sqrt(mean)
    probability = math.exp(-mean)
    cumulative = probability
    k = 0
    lower: int | None = 0 if cumulative >= _TAIL else None
    while cumulative < 1 - _TAIL:
        k += 1
        probability *= mean / k
        cumulative += probability
        if lower is None and cumulative >= _TAIL:
            lower = k
    return float(k - (lower or 0))


def detect(
    counts: Mapping[str, int], history: Sequence[Mapping[str, int]], config: DetectionConfig
) -> list[Detected]:
    """Trending hashtags of one window, best first (score, then name), at most top_n.

    `history` holds the previous windows' counts (most recent first, already limited to
    windows since counting began); an empty mapping is a window without any hashtag.
    """
    windows = history[: config.baseline_windows]
    if len(windows) < config.min_history:
        return []
    found: list[tuple[float, str, int, float]] = []
    for hashtag, count in counts.items():
        if count < config.min_count:
            continue
        expected = sum(window.get(hashtag, 0) for window in windows) / len(windows)
        if count <= expected:
            continue
        score = (count - expected) / max(1.0, poisson_interval_width(round(expected, 6)))
        if score >= config.threshold:
            found.append((-score, hashtag, count, expected))
    found.sort()
    return [
        Detected(hashtag, count, round(expected, 6), round(-negative_score, 6), rank)
        for rank, (negative_score, hashtag, count, expected) in enumerate(found[: config.top_n], 1)
    ]
