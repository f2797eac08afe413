"""Gateway-only settings (`STARLING_GATEWAY_*`, plus the chart's `HTTP_PORT`).

Kafka, the store and the metrics port come from `RuntimeSettings` like every service.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from starling.web.settings import HttpSettings, http_port_field

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _http_url(value: str, variable: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"{variable} must be an http(s) URL, got {value!r}")
    return value


class GatewaySettings(HttpSettings):
    model_config = SettingsConfigDict(
        env_prefix="STARLING_GATEWAY_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    http_port: int = http_port_field(8080, "STARLING_GATEWAY_")

    # ---- identity (docs/services.md, "Authentication")
    # `token`: a signed JWT from the issuer (Authorization: Bearer, or the session cookie).
    # `header`: an authenticating ingress sets `user_header`; it counts only when the TCP
    # peer is one of `trusted_proxies`, since anyone else could set it too.
    auth: Literal["token", "header"] = "token"
    # Compared exactly with the token's `iss` claim (mind a trailing slash); the JWKS is
    # found through its discovery document unless `jwks_url` is set.
    issuer: str | None = None
    audience: str | None = Field(default=None, min_length=1)
    # Set where the gateway reaches the issuer by another address than its public one
    # (an in-cluster Service): the keys are fetched from here, `iss` still must be `issuer`.
    jwks_url: str | None = None
    # `store`: refuse tokens whose `sid` the identity service revoked at sign-out.
    revocation: Literal["none", "store"] = "none"
    # A cached "not revoked" answer is re-asked at most this often: sign-out takes effect
    # within it, at one store round trip per active token per interval.
    revocation_recheck_s: float = Field(default=2.0, gt=0, le=300)
    # Clock skew tolerated on exp / nbf / iat.
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    # Verified tokens kept (LRU), each until its exp: the hot path is a dict lookup.
    token_cache_size: int = Field(default=10_000, ge=1, le=10_000_000)
    # The key set is re-read this often (rotation is picked up without a token asking)...
    jwks_refresh_s: float = Field(default=300.0, ge=1, le=86_400)
    # ...and when a token names an unknown `kid`, at most once per this interval, so forged
    # kids cannot make the gateway hammer the issuer.
    jwks_min_refetch_s: float = Field(default=10.0, ge=0, le=3600)
    jwks_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Where a browser reaches the identity service to sign in (`POST <url>/v1/sessions`):
    # the live page at `/` learns it from `/config.json`. Unset, the issuer URL is used
    # (the built-in identity service is its own issuer). That service must list the
    # page's origin in STARLING_IDENTITY_ALLOWED_ORIGINS.
    identity_url: str | None = None
    # CIDRs whose requests may carry `user_header` (auth=header only), comma-separated.
    trusted_proxies: Annotated[tuple[IpNetwork, ...], NoDecode] = ()
    user_header: str = Field(default="X-Starling-User", min_length=1)
    # Request line plus headers, in bytes; past it the connection gets 431 and is closed.
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)

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
    # Resume (`Last-Event-ID`): the recent frames kept per user (while connected and this
    # many seconds after their last stream closed), at most `stream_replay_frames` per
    # user and `stream_replay_total` per pod (~0.5 KB each at most: ~25 MB at the
    # default). A client away longer, or missing more, gets `resync` and re-reads.
    stream_replay_s: float = Field(default=120.0, gt=0, le=3600)
    stream_replay_frames: int = Field(default=256, ge=1, le=100_000)
    stream_replay_total: int = Field(default=50_000, ge=1, le=10_000_000)
    # One user cannot take a pod's streams: past this many open streams of theirs, 429.
    max_streams_per_user: int = Field(default=5, ge=1, le=1000)
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

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            try:
                return tuple(ipaddress.ip_network(str(item), strict=False) for item in value)
            except ValueError as error:
                raise ValueError(f"not a CIDR list (e.g. 10.0.0.0/8,fd00::/8): {error}") from None
        return value

    @property
    def page_identity_url(self) -> str | None:
        """The identity service's base URL as the live page uses it (no trailing slash)."""
        url = self.identity_url or self.issuer
        return url.rstrip("/") if url is not None else None

    @model_validator(mode="after")
    def _mode_is_complete(self) -> Self:
        if self.auth == "token":
            if self.issuer is None:
                raise ValueError(
                    "STARLING_GATEWAY_ISSUER is required with STARLING_GATEWAY_AUTH=token"
                    " (the issuer URL exactly as in the tokens' `iss`)"
                )
            _http_url(self.issuer, "STARLING_GATEWAY_ISSUER")
            if self.audience is None:
                raise ValueError(
                    "STARLING_GATEWAY_AUDIENCE is required with STARLING_GATEWAY_AUTH=token"
                    " (the `aud` the issuer puts in tokens meant for Starling)"
                )
            if self.jwks_url is not None:
                _http_url(self.jwks_url, "STARLING_GATEWAY_JWKS_URL")
        elif not self.trusted_proxies:
            raise ValueError(
                "STARLING_GATEWAY_TRUSTED_PROXIES is required with STARLING_GATEWAY_AUTH=header"
                " (the ingress addresses whose identity header counts)"
            )
        if self.identity_url is not None:
            _http_url(self.identity_url, "STARLING_GATEWAY_IDENTITY_URL")
        if self.revocation == "store" and self.auth != "token":
            raise ValueError("STARLING_GATEWAY_REVOCATION=store needs STARLING_GATEWAY_AUTH=token")
        return self
