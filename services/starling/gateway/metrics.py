"""The gateway's Prometheus metrics (its own registry, served on the metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from starling.web.metrics import RequestMetrics

# Request latency (seconds): reads take a store round trip, POSTs a broker round trip.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics(RequestMetrics):
    def __init__(self) -> None:
        super().__init__(
            "starling_gateway",
            "time to the response's start (for streams: to the first byte)",
            _LATENCY_BUCKETS,
        )
        self.accepted = Counter(
            "starling_gateway_events_accepted",
            "events acknowledged by the brokers and answered 202",
            ("topic",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "starling_gateway_events_rejected",
            "events refused, by reason (codec error kind, content type, identity, blocked,"
            " not_acknowledged)",
            ("reason",),
            registry=self.registry,
        )
        self.streams = Gauge(
            "starling_gateway_streams",
            "SSE streams currently open",
            registry=self.registry,
        )
        self.streams_dropped = Counter(
            "starling_gateway_streams_dropped",
            "SSE streams closed because the client fell too far behind",
            registry=self.registry,
        )
        self.resumes = Counter(
            "starling_gateway_stream_resumes",
            "streams opened with a last event id: replayed, or resync (unknown_id, too_old)",
            ("outcome",),
            registry=self.registry,
        )
        self.updates = Counter(
            "starling_gateway_updates_pushed",
            "live updates queued to streams, by kind",
            ("kind",),
            registry=self.registry,
        )
        self.follow_entries = Gauge(
            "starling_gateway_follow_entries",
            "followed accounts held for connected users (routing index for new tweets)",
            registry=self.registry,
        )
        self.follows_truncated = Counter(
            "starling_gateway_follows_truncated",
            "follow loads cut short because the pod's follow entries budget was reached",
            registry=self.registry,
        )
        self.feed_errors = Counter(
            "starling_gateway_feed_errors",
            "failures and skipped records of the live feeds",
            ("feed",),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "starling_gateway_auth_failures",
            "requests refused for identity (401) or authorization (403), by reason",
            ("reason",),
            registry=self.registry,
        )
        self.token_cache = Counter(
            "starling_gateway_token_cache",
            "token verifications answered from the cache (hit) or verified in full (miss)",
            ("result",),
            registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "starling_gateway_jwks_fetches",
            "fetches of the issuer's key set, by outcome (ok, failed)",
            ("outcome",),
            registry=self.registry,
        )
