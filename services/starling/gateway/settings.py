"""Gateway-only settings (`STARLING_GATEWAY_*`, plus the chart's `HTTP_PORT`).

Kafka, the store and the metrics port come from `RuntimeSettings` like every service.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STARLING_GATEWAY_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    # The chart sets HTTP_PORT (it names the container port after it); 0 picks a free port.
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65_535,
        validation_alias=AliasChoices("HTTP_PORT", "STARLING_GATEWAY_HTTP_PORT"),
    )
    http_host: str = "0.0.0.0"
    # Identity comes from the ingress in front of the gateway, which authenticates the
    # client and sets this header (overwriting any value the client sent). With it on,
    # a request without the header is 401 and one acting for another user is 403. It is
    # not authentication: anyone who can reach the pod directly can set the header.
    trust_user_header: bool = True
    user_header: str = Field(default="X-Starling-User", min_length=1)
    # A POST answers 202 only once the brokers acknowledged the event (acks=all); past
    # this it answers 503 and the client retries with the same event_id.
    ack_timeout_s: float = Field(default=5.0, gt=0, le=60)
    default_limit: int = Field(default=50, ge=1, le=1000)
    max_limit: int = Field(default=200, ge=1, le=1000)
    # A timeline page scans at most `limit` times this many entries for `limit` tweets
    # not hidden by blocks or mutes; past that it answers fewer, with a cursor to go on.
    timeline_scan_factor: int = Field(default=3, ge=1, le=20)
    # SSE: a comment line this often keeps proxies from closing an idle stream.
    heartbeat_s: float = Field(default=15.0, gt=0, le=300)
    # Updates waiting for one client; a client this far behind is disconnected (it
    # reconnects and re-reads) rather than let the pod buffer without bound.
    stream_queue_size: int = Field(default=256, ge=1, le=100_000)
    max_streams: int = Field(default=10_000, ge=1, le=1_000_000)
    # New tweets of followed accounts are pushed by following, per connected user, whom
    # they follow (minus blocked and muted), reloaded this often while connected: a
    # follow, unfollow, block or mute takes effect on the stream within this interval.
    follow_refresh_s: float = Field(default=60.0, gt=0, le=3600)
    # At most this many followed accounts are kept per connected user (a user following
    # more gets live tweets from an arbitrary subset of that size; their timeline is
    # complete).
    max_following: int = Field(default=2000, ge=1, le=100_000)
    # At most this many (followed account, connected user) entries per pod, ~144 B each
    # (~70 MB at the default, within the chart's 256 Mi limit); a user whose follows do
    # not fit gets live tweets from only those that do.
    max_follow_entries: int = Field(default=500_000, ge=1, le=100_000_000)
