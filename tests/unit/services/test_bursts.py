"""Burst detection: the Poisson interval and the trend decision."""

from __future__ import annotations

import math
import random

import pytest

from starling.services.bursts import DetectionConfig, detect, poisson_interval_width
from starling.services.trends import baseline_windows, window_of

pytestmark = pytest.mark.unit


def test_poisson_interval_width_small_and_large_means() -> None:
    assert poisson_interval_width(0.0) == 0.0
    # Poisson(1): P(X<=0)=0.37 >= 0.005, P(X<=4)=0.996 >= 0.995 -> [0, 4]
    assert poisson_interval_width(1.0) == 4.0
    # Large means: close to the normal interval 2 * 2.576 * sqrt(mean).
    assert poisson_interval_width(10_000.0) == pytest.approx(2 * 2.5758 * 100, rel=1e-3)
    exact = poisson_interval_width(400.0)
    assert exact == pytest.approx(2 * 2.5758 * math.sqrt(400.0), rel=0.05)


def test_burst_is_detected_and_steady_tags_are_not() -> None:
    config = DetectionConfig(baseline_windows=6, min_history=3, min_count=10)
    rng = random.Random(1)
    history = [{"steady": 400 + rng.randint(-20, 20), "rare": 1} for _ in range(6)]
    current = {"steady": 415, "rare": 60, "new": 12}
    found = detect(current, history, config)
    assert [t.hashtag for t in found] == ["rare", "new"]
    assert found[0].rank == 1 and found[0].expected == 1.0 and found[0].count == 60


def test_no_trends_before_enough_history_or_below_min_count() -> None:
    config = DetectionConfig(baseline_windows=6, min_history=3, min_count=10)
    assert detect({"x": 100}, [{}, {}], config) == []
    assert detect({"x": 9}, [{}, {}, {}], config) == []
    assert detect({"x": 10}, [{}, {}, {}], config)[0].hashtag == "x"


def test_a_drop_never_trends_and_ranking_is_by_score_then_name() -> None:
    config = DetectionConfig(baseline_windows=3, min_history=1, min_count=1, top_n=2)
    history = [{"a": 100, "b": 0, "c": 0}]
    found = detect({"a": 10, "b": 30, "c": 30, "d": 5}, history, config)
    assert [t.hashtag for t in found] == ["b", "c"]


def test_windows() -> None:
    from datetime import UTC, datetime

    assert window_of(datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC), 5) % 5 == 0
    assert baseline_windows(100, 10, 3, first=80) == [90, 80]
    assert baseline_windows(100, 10, 3, first=None) == []
