"""No record moves trends' watermark past wall clock plus the event-time allowance."""

from __future__ import annotations

import time

import pytest

from starling.runtime.config import RuntimeSettings
from starling.runtime.eventtime import EventTimeSettings
from starling.services.trends import TrendsHandler, TrendsSettings

pytestmark = pytest.mark.unit

YEAR_2099 = 4_070_908_800.0


def test_the_watermark_is_capped_at_now_plus_the_allowance() -> None:
    runtime = RuntimeSettings(
        starling_service="trends", kafka_bootstrap_servers="unused:9092", store_port=1
    )
    handler = TrendsHandler(
        runtime,
        settings=TrendsSettings(idle_partition_s=1.0),
        event_time=EventTimeSettings(event_time_skew_s=120),
    )
    try:
        # As if a 2099 time had been seen (e.g. accepted under a clock that later moved
        # back), on a partition that then went quiet.
        handler._partition_times[("tweets.enriched", 0)] = (YEAR_2099, time.monotonic() - 60)
        watermark = handler.watermark()
        assert watermark is not None
        assert watermark <= time.time() + 120
        assert watermark >= time.time() + 110
    finally:
        handler.close()
