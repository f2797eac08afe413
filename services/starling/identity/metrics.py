"""The identity service's Prometheus metrics (its own registry, served on the metrics port)."""

from __future__ import annotations

from prometheus_client import Counter

from starling.web.metrics import RequestMetrics

# Sign-in latency is dominated by one Argon2id verification (~50 ms at the defaults) and a
# broker round trip; anything past a second means hashes are queueing.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IdentityMetrics(RequestMetrics):
    def __init__(self) -> None:
        super().__init__("starling_identity", "time to the response, by route", _LATENCY_BUCKETS)
        self.signin_attempts = Counter(
            "starling_identity_signin_attempts",
            "sign-in attempts recorded as logins, by outcome",
            ("outcome",),
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "starling_identity_rate_limited",
            "attempts refused by a sliding-window limit, by limit (account, address, signup)",
            ("scope",),
            registry=self.registry,
        )
        self.signups = Counter(
            "starling_identity_signups",
            "accounts created",
            registry=self.registry,
        )
        self.signouts = Counter(
            "starling_identity_signouts",
            "sessions revoked by sign-out",
            registry=self.registry,
        )
        self.not_acknowledged = Counter(
            "starling_identity_logins_not_acknowledged",
            "sign-in attempts answered 503 because Kafka did not acknowledge their login",
            registry=self.registry,
        )
