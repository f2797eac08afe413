"""Event time from clients, bounded: how far ahead of this machine's clock it may be.

Clients stamp `event_time`; their clocks drift, so a little future is normal, but an
event from 2099 would move every event-time clock downstream (trends' watermark closes
the current window at once). One setting bounds it everywhere: `STARLING_EVENT_TIME_SKEW_S`
(default 300 s). An event more than that ahead of now is refused by the gateway (422,
reason `event_time_in_future`) and dead-lettered by every service that reads event time
(header `starling.error.kind: event_time_in_future`). Past event times are accepted: a
backlog is late, not wrong; consumers count it in the interval it belongs to (trends
counts it as late once its window closed).
"""

from __future__ import annotations

import time
from datetime import datetime

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

FUTURE_REASON = "event_time_in_future"
EVENT_TIME_FIELD = "$.event_time"
DEFAULT_SKEW_S = 300.0


class EventTimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STARLING_", extra="ignore", frozen=True)

    # At most an hour: records are stamped with their event time, and brokers refuse a
    # timestamp further ahead than `log.message.timestamp.after.max.ms` (default 1 h).
    event_time_skew_s: float = Field(default=DEFAULT_SKEW_S, ge=0, le=3_600)


def timestamp_ms(event_time: datetime) -> int:
    """The Kafka record timestamp for an event: its event time, in ms since the epoch."""
    return int(event_time.timestamp() * 1000)


class EventTimeBound:
    """The allowance applied to the wall clock at the moment of the check."""

    def __init__(self, skew_s: float) -> None:
        self.skew_s = skew_s

    def limit(self) -> float:
        """The latest acceptable event time (Unix seconds), now."""
        return time.time() + self.skew_s

    def too_far_ahead(self, seconds: float) -> bool:
        return seconds > self.limit()

    def describe(self, event_time: datetime) -> str:
        ahead = event_time.timestamp() - time.time()
        return (
            f"event_time {event_time.isoformat()} is {ahead:.0f} s ahead of the clock; at most"
            f" {self.skew_s:g} s is allowed (STARLING_EVENT_TIME_SKEW_S): fix the client's clock"
        )
