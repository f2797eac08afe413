"""The request metrics every HTTP service has, in the service's own registry."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from starling.web.errors import ApiError

Handler = Callable[[Request], Awaitable[Response]]


class RequestMetrics:
    """`<prefix>_requests` by route and status and `<prefix>_request_duration_seconds` by
    route; a service's own metrics go in `registry` beside them."""

    def __init__(self, prefix: str, latency_help: str, latency_buckets: Sequence[float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{prefix}_requests",
            "HTTP requests answered, by route and status",
            ("route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            latency_help,
            ("route",),
            buckets=latency_buckets,
            registry=self.registry,
        )

    def endpoint(self, route: str, handler: Handler) -> Handler:
        """`handler` as the endpoint of `route`: an ApiError it raises is answered as its
        JSON, and every answer is counted and timed."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except ApiError as error:
                response = error.response()
            self.requests.labels(route, str(response.status_code)).inc()
            self.latency.labels(route).observe(time.perf_counter() - started)
            return response

        return endpoint
