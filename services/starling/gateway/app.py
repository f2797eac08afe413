"""The gateway's HTTP API (Starlette): events in, timelines/notifications/trends out, SSE.

* `POST /v1/events`: 202 `{event_id, type, topic, partition, offset}` once acknowledged;
* `GET /v1/users/{id}/timeline?limit=&before=`: newest first, with the enriched tweet
  where the store still has it, without tweets hidden by blocks and mutes
  (`starling.gateway.timeline`);
* `GET /v1/users/{id}/notifications?limit=`: the in-app inbox, newest first;
* `GET /v1/users/{id}/who-to-follow`: the recommendations DAG's latest accounts to follow;
* `GET /v1/trends`: the trends of the latest closed window, and the current window's leaders;
* `GET /v1/users/{id}/stream`: SSE with `trend`, `timeline`, `notification`, `resync`,
  `close` events; resumable with `Last-Event-ID` (or `?last_event_id=`);
* `GET /openapi.json`: the checked-in OpenAPI document describing all of the above;
* `GET /`, `/static/live.js`, `/static/live.css`, `/config.json`: the live page
  (`starling.gateway.page`, docs/live-page.md).

Every route but trends, the document and the page needs an identity (`starling.gateway.auth`), and
acts only for it: a user reads their own timeline, notifications and stream, and posts
only events whose actor they are. Errors are JSON `{"error": kind, "reason": code,
"field": path or null, "message": text}`; `reason` is the specific code (equal to `error`
when there is nothing more specific). Store reads are blocking redis-py calls, run in the
threadpool so the event loop only ever waits on I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import anyio
import msgspec
import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from starling.events import (
    MAX_EVENT_BYTES,
    EventError,
    EventErrorKind,
    InteractionAction,
    TweetCreated,
    UserInteraction,
    UserLogin,
    decode_as,
    encode,
    type_tag,
)
from starling.gateway.auth import (
    AuthError,
    AuthUnavailableError,
    Principal,
    TokenVerifier,
    TrustedHeader,
    bearer_token,
)
from starling.gateway.feeds import LiveFeed, TrendFeed
from starling.gateway.follows import FollowIndex, FollowingLoader
from starling.gateway.hub import (
    Hub,
    HubFullError,
    ReplayBuffer,
    Subscription,
    UserStreamsFullError,
)
from starling.gateway.metrics import GatewayMetrics
from starling.gateway.page import ASSETS, Page
from starling.gateway.settings import GatewaySettings
from starling.gateway.timeline import VisibleTimeline
from starling.runtime.config import RuntimeSettings, load_settings
from starling.runtime.eventtime import (
    EVENT_TIME_FIELD,
    FUTURE_REASON,
    EventTimeBound,
    EventTimeSettings,
    timestamp_ms,
)
from starling.services.common import StoreReadiness
from starling.store import keys
from starling.store.client import connect
from starling.store.live import TimelineUpdate, encode_update
from starling.store.trends import CurrentWindow, current_leaders
from starling.topics import CATALOG, TRENDS, TWEETS
from starling.web.errors import ApiError, json_response
from starling.web.heads import HeadSizeLimit
from starling.web.health import ProducerHealth
from starling.web.producer import AckingProducer, NotAcknowledgedError

log = logging.getLogger("starling.gateway")

# What clients may send; everything else is produced by the pipeline itself. Logins are
# facts the identity service records at each sign-in, never a client's claim.
ClientEvent = TweetCreated | UserInteraction
CLIENT_EVENT_TYPES: tuple[type[TweetCreated | UserInteraction], ...] = (
    TweetCreated,
    UserInteraction,
)
# The field naming the user who acts: the one the identity must match.
ACTOR_FIELDS: dict[type[Any], str] = {
    TweetCreated: "author_id",
    UserInteraction: "actor_id",
}
# What a user blocked by the target may not do to them or their tweets. Undoing (unlike,
# unfollow) and protecting oneself (block, mute) stay allowed.
BLOCKED_ACTIONS = frozenset(
    {
        InteractionAction.LIKE,
        InteractionAction.RETWEET,
        InteractionAction.REPLY,
        InteractionAction.QUOTE,
        InteractionAction.FOLLOW,
    }
)
LOGIN_TAG = type_tag(UserLogin)
ERROR_STATUS: dict[EventErrorKind, int] = {
    EventErrorKind.TOO_LARGE: 413,
    EventErrorKind.MALFORMED: 400,
    EventErrorKind.INVALID: 400,
    EventErrorKind.UNKNOWN_VERSION: 400,
    EventErrorKind.UNKNOWN_TYPE: 422,
    EventErrorKind.WRONG_TYPE: 422,
}
MAX_ID = 2**63 - 1
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx-style proxies buffer responses unless told not to; a buffered stream is not live.
    "X-Accel-Buffering": "no",
}
SSE_PREAMBLE = b"retry: 3000\n: connected\n\n"
# Longest `last_event_id` accepted: `<8 hex>-<19 digits>` with room to spare.
MAX_EVENT_ID = 64
SSE_HEARTBEAT = b": keepalive\n\n"


class _TypeOnly(msgspec.Struct):
    type: Any = None


_type_decoder = msgspec.json.Decoder(_TypeOnly)


def openapi_document() -> bytes:
    """The checked-in OpenAPI document, shipped inside the package."""
    return resources.files("starling.gateway").joinpath("openapi.json").read_bytes()


class GatewayError(ApiError):
    # The gateway's contract (docs/services.md): `reason` is `error` when nothing is finer.
    reason_repeats_error = True


def unauthenticated(error: AuthError) -> ApiError:
    # RFC 6750: no error code when the request carried no credentials at all.
    challenge = (
        'Bearer realm="starling"'
        if error.reason == "missing"
        else f'Bearer realm="starling", error="invalid_token", error_description="{error.reason}"'
    )
    return GatewayError(
        401,
        "unauthenticated",
        error.message,
        reason=error.reason,
        headers={"WWW-Authenticate": challenge},
    )


def is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json"


def parse_id(text: str | None, field: str) -> int:
    """A user or tweet id (decimal, 1..2^63-1); ApiError 400 naming `field` otherwise."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise GatewayError(400, "invalid", f"must be a decimal id, got {text!r}", field)
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise GatewayError(400, "invalid", f"must be in 1..{MAX_ID}", field)
    return value


def parse_limit(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise GatewayError(
            400, "invalid", f"limit must be an integer in 1..{maximum}", "query.limit"
        )
    return int(text)


def event_error(error: EventError) -> ApiError:
    return GatewayError(ERROR_STATUS[error.kind], error.kind.value, error.reason, error.field)


class Gateway:
    """Everything one gateway pod runs; `app` is the ASGI application to serve."""

    def __init__(
        self,
        runtime: RuntimeSettings,
        settings: GatewaySettings,
        *,
        producer_overrides: dict[str, Any] | None = None,
        event_time: EventTimeSettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.event_time_bound = EventTimeBound(
            (event_time or load_settings(EventTimeSettings)).event_time_skew_s
        )
        self.metrics = GatewayMetrics()
        self.store: redis.Redis = connect(**runtime.redis_kwargs())
        self.producer = AckingProducer(
            {**runtime.producer_config(), **(producer_overrides or {})},
            settings.ack_timeout_s,
            probe_topic=runtime.topic(TWEETS),
        )
        self.health = ProducerHealth(stall_after_s=30.0, producer=self.producer)
        self.verifier: TokenVerifier | None = None
        self.trusted_header: TrustedHeader | None = None
        if settings.auth == "token":
            self.verifier = TokenVerifier(
                settings,
                self.store,
                on_fetch=lambda outcome: self.metrics.jwks_fetches.labels(outcome).inc(),
                # Children bound once: a label lookup per request would cost more than
                # the cached verification itself.
                on_cache={
                    "hit": self.metrics.token_cache.labels("hit").inc,
                    "miss": self.metrics.token_cache.labels("miss").inc,
                },
            )
        else:
            self.trusted_header = TrustedHeader(settings.trusted_proxies, settings.user_header)
        store_ready = StoreReadiness(self.store)
        verifier = self.verifier
        # Not ready before the issuer's keys are in: every token would be answered 503.
        self.health.store_check = lambda: (
            store_ready()
            and self.producer.reachable()
            and (verifier is None or verifier.keys.loaded)
        )
        self.hub = Hub(
            settings.stream_queue_size,
            settings.max_streams,
            on_drop=self.metrics.streams_dropped.inc,
            max_per_user=settings.max_streams_per_user,
            replay=ReplayBuffer(
                per_user=settings.stream_replay_frames,
                total=settings.stream_replay_total,
                max_age_s=settings.stream_replay_s,
                max_gone=settings.max_streams,
            ),
        )
        self.timeline = VisibleTimeline(self.store, settings.timeline_scan_factor)
        self.follows = FollowIndex(
            settings.max_follow_entries, on_truncate=self.metrics.follows_truncated.inc
        )
        self.metrics.follow_entries.set_function(lambda: self.follows.entries)
        self.load_following = FollowingLoader(self.store, settings.max_following)
        # Follow loads get their own few threads: a reconnect storm must not take the
        # threadpool the REST reads run in.
        self._follow_limiter = anyio.CapacityLimiter(4)
        self._follow_tasks: dict[int, asyncio.Task[None]] = {}
        # Follows kept after a user's stream closed, while the hub keeps their frames.
        self._follows_leaving: dict[asyncio.TimerHandle, int] = {}
        self.topics = {
            event_type: runtime.topic(CATALOG.topic_for(event_type).name)
            for event_type in CLIENT_EVENT_TYPES
        }
        self.trends_topic = runtime.topic(TRENDS)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.trend_feed: TrendFeed | None = None
        self.live_feed: LiveFeed | None = None
        self._openapi = openapi_document()
        self.page = Page(settings.page_identity_url)
        self.app = Starlette(
            routes=[
                *(Route(path, self.page.asset, methods=["GET"]) for path in ASSETS),
                Route("/config.json", self.page.config, methods=["GET"]),
                Route("/openapi.json", self.get_openapi, methods=["GET"]),
                Route(
                    "/v1/events", self.metrics.endpoint("events", self.post_event), methods=["POST"]
                ),
                Route(
                    "/v1/users/{user_id}/timeline",
                    self.metrics.endpoint("timeline", self.get_timeline),
                    methods=["GET"],
                ),
                Route(
                    "/v1/users/{user_id}/notifications",
                    self.metrics.endpoint("notifications", self.get_notifications),
                    methods=["GET"],
                ),
                Route(
                    "/v1/users/{user_id}/who-to-follow",
                    self.metrics.endpoint("who_to_follow", self.get_who_to_follow),
                    methods=["GET"],
                ),
                Route(
                    "/v1/trends", self.metrics.endpoint("trends", self.get_trends), methods=["GET"]
                ),
                Route(
                    "/v1/users/{user_id}/stream",
                    self.metrics.endpoint("stream", self.get_stream),
                    methods=["GET"],
                ),
            ],
            exception_handlers={HTTPException: GatewayError.for_http_exception},
            middleware=[Middleware(HeadSizeLimit, max_bytes=settings.max_header_bytes)],
            lifespan=self._lifespan,
        )

    # ------------------------------------------------------------------ lifecycle

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()
        self.producer.start()
        self.trend_feed = TrendFeed(
            self.loop,
            self._feed_error,
            self._trend_consumer_config(),
            self.trends_topic,
            self._on_trend,
        )
        self.live_feed = LiveFeed(
            self.loop, self._feed_error, self.store, self._on_live, self._on_new_tweets
        )
        self.trend_feed.start()
        self.live_feed.start()
        beat = asyncio.create_task(self.health.keep_beating())
        key_refresh = asyncio.create_task(self._keep_keys_fresh())
        self.health.joined = True
        log.info("gateway: serving; trends from %s", self.trends_topic)
        try:
            yield
        finally:
            self.begin_shutdown()
            beat.cancel()
            key_refresh.cancel()
            for handle, user_id in list(self._follows_leaving.items()):
                handle.cancel()
                self._follow_closed(user_id)
            self._follows_leaving.clear()
            for task in self._follow_tasks.values():
                task.cancel()
            await run_in_threadpool(self._stop_threads)

    def begin_shutdown(self) -> None:
        """Not ready any more, and every stream told to go (run on the loop)."""
        self.health.stopping = True
        self.hub.close_all()

    def _stop_threads(self) -> None:
        for feed in (self.trend_feed, self.live_feed):
            if feed is not None:
                feed.stop()
        self.producer.close()
        self.store.close()

    async def _keep_keys_fresh(self) -> None:
        """Fetch the issuer's keys at start (retrying until they come) and every
        `jwks_refresh_s` after, so a rotation is picked up before tokens need it."""
        if self.verifier is None:
            return
        while True:
            try:
                await self.verifier.keys.refresh()
            except AuthUnavailableError:
                # Already logged and counted; not ready until the keys come.
                delay = 2.0 if not self.verifier.keys.loaded else self.settings.jwks_refresh_s
            else:
                delay = self.settings.jwks_refresh_s
            await asyncio.sleep(delay)

    def _trend_consumer_config(self) -> dict[str, Any]:
        return {
            **self.runtime.kafka_common(),
            "client.id": "starling-gateway-trends",
            "group.id": self.runtime.group_id,
            # Assigned partitions, read from the end, never committed (see feeds.py).
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "latest",
        }

    def _feed_error(self, feed: str) -> None:
        self.metrics.feed_errors.labels(feed).inc()

    def _on_trend(self, data: bytes) -> None:
        self.metrics.updates.labels("trend").inc(self.hub.broadcast("trend", data))

    def _on_live(self, user_id: int, kind: str, data: bytes) -> None:
        self.metrics.updates.labels(kind).inc(self.hub.to_user(user_id, kind, data))

    def _on_new_tweets(self, tweets: list[tuple[int, int]]) -> None:
        """Tweets ingestion fanned out: the same `timeline` event the timelines service's
        updates make, to the connected followers of each author and to the author."""
        delivered = 0
        for user_id, tweet_ids in self.follows.route(tweets).items():
            data = encode_update(TimelineUpdate(tweet_ids))
            delivered += self.hub.to_user(user_id, "timeline", data)
        if delivered:
            self.metrics.updates.labels("timeline").inc(delivered)

    async def _keep_following(self, user_id: int) -> None:
        """Load whom `user_id` follows now and again every `follow_refresh_s`, until
        their last stream closes (the task is cancelled then)."""
        while True:
            try:
                following = await anyio.to_thread.run_sync(
                    self.load_following, user_id, limiter=self._follow_limiter
                )
            except Exception as error:
                # Live tweets for this user keep the last loaded follows until the next
                # refresh; nothing else is affected.
                log.warning("gateway: could not load whom user %d follows: %s", user_id, error)
                self._feed_error("follows")
            else:
                self.follows.update(user_id, following)
            await asyncio.sleep(self.settings.follow_refresh_s)

    def _follow_opened(self, user_id: int) -> None:
        if self.follows.open(user_id):
            self._follow_tasks[user_id] = asyncio.create_task(self._keep_following(user_id))

    def _follow_left(self, user_id: int) -> None:
        """A stream closed: keep routing the user's followed accounts' tweets (into the
        hub's replay buffer) as long as the hub keeps their frames for a resume, plus a
        margin so the follows never go before the buffer does."""
        if self.loop is None or self.health.stopping:
            # A stopping pod's buffer goes with it: nothing to keep routing for.
            self._follow_closed(user_id)
            return

        def expire() -> None:
            self._follows_leaving.pop(handle, None)
            self._follow_closed(user_id)

        handle = self.loop.call_later(self.settings.stream_replay_s + 5.0, expire)
        self._follows_leaving[handle] = user_id

    def _follow_closed(self, user_id: int) -> None:
        if self.follows.close(user_id):
            task = self._follow_tasks.pop(user_id, None)
            if task is not None:
                task.cancel()

    # ------------------------------------------------------------------ routes

    async def _principal(self, request: Request) -> Principal:
        """Who sends this request; ApiError 401 (or 503 when it cannot be decided)."""
        try:
            if self.verifier is not None:
                return await self.verifier.verify(bearer_token(request))
            assert self.trusted_header is not None
            peer = request.client.host if request.client is not None else None
            return self.trusted_header.principal(peer, request.headers)
        except AuthError as error:
            self.metrics.auth_failures.labels(error.reason).inc()
            raise unauthenticated(error) from None
        except AuthUnavailableError as error:
            raise GatewayError(503, error.error, error.message) from None

    def _forbid(self, reason: str, message: str, field: str | None) -> ApiError:
        self.metrics.auth_failures.labels(reason).inc()
        return GatewayError(403, "forbidden", message, field, reason=reason)

    async def _owner(self, request: Request) -> int:
        """The path's user id, who must be the requester (reads of one's own data)."""
        principal = await self._principal(request)
        user_id = parse_id(request.path_params["user_id"], "path.user_id")
        if principal.user_id != user_id:
            raise self._forbid(
                "not_your_resource",
                f"user {principal.user_id} may not read user {user_id}'s data",
                "path.user_id",
            )
        return user_id

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
            raise GatewayError(
                413, "too_large", f"{declared} bytes exceeds the {MAX_EVENT_BYTES} limit"
            )
        body = bytearray()
        # Chunked bodies declare no length: stop reading as soon as the limit is passed.
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_EVENT_BYTES:
                raise GatewayError(413, "too_large", f"more than the {MAX_EVENT_BYTES}-byte limit")
        return bytes(body)

    async def post_event(self, request: Request) -> Response:
        try:
            principal = await self._principal(request)
            event = await self._client_event(request)
            actor_field = ACTOR_FIELDS[type(event)]
            actor = getattr(event, actor_field)
            if actor != principal.user_id:
                raise self._forbid(
                    "not_your_resource",
                    f"user {principal.user_id} may not act as user {actor}",
                    f"$.{actor_field}",
                )
            await self._refuse_if_blocked(event)
        except ApiError as error:
            self.metrics.rejected.labels(error.reason).inc()
            raise
        topic = self.topics[type(event)]
        try:
            # Re-encoded: what reaches the topic is exactly the schema, no unknown extras.
            delivery = await self.producer.send(
                topic, event.partition_key(), encode(event), timestamp_ms(event.event_time)
            )
        except NotAcknowledgedError as error:
            self.metrics.rejected.labels("not_acknowledged").inc()
            raise GatewayError(
                503,
                "not_acknowledged",
                f"the event was not acknowledged by Kafka ({error}); it may or may not be"
                " stored: retry with the same event_id (consumers dedupe by it)",
            ) from None
        self.metrics.accepted.labels(topic).inc()
        return json_response(
            {
                "event_id": str(event.event_id),
                "type": type_tag(type(event)),
                "topic": delivery.topic,
                "partition": delivery.partition,
                "offset": delivery.offset,
            },
            202,
        )

    async def _client_event(self, request: Request) -> TweetCreated | UserInteraction:
        if not is_json(request.headers.get("content-type")):
            raise GatewayError(
                415,
                "unsupported_media_type",
                "send the event as `Content-Type: application/json`",
                "header.content-type",
            )
        body = await self._read_body(request)
        try:
            event: TweetCreated | UserInteraction = decode_as(body, ClientEvent)  # type: ignore[arg-type]
        except EventError as error:
            if error.kind is EventErrorKind.WRONG_TYPE and _tag_of(body) == LOGIN_TAG:
                raise GatewayError(
                    422,
                    "wrong_type",
                    "logins are recorded by the identity service at sign-in"
                    " (POST /v1/sessions there), not posted by clients",
                    "$.type",
                ) from None
            raise event_error(error) from None
        # A client's clock far ahead would move every event-time clock downstream.
        if self.event_time_bound.too_far_ahead(event.event_time.timestamp()):
            raise GatewayError(
                422,
                FUTURE_REASON,
                self.event_time_bound.describe(event.event_time),
                EVENT_TIME_FIELD,
                reason=FUTURE_REASON,
            )
        return event

    async def _refuse_if_blocked(self, event: TweetCreated | UserInteraction) -> None:
        """A user the target blocked may not like, retweet, quote, reply to or follow
        them: one SISMEMBER on the target's block set."""
        if isinstance(event, UserInteraction):
            if event.action not in BLOCKED_ACTIONS:
                return
            actor, target, field = event.actor_id, event.target_user_id, "$.target_user_id"
        elif event.reply_to_user_id is not None:
            actor, target, field = event.author_id, event.reply_to_user_id, "$.reply_to_user_id"
        else:
            return
        if actor == target:
            return
        blocked = await self._read_store(
            lambda: self.store.sismember(keys.blocked(target), str(actor))
        )
        if blocked:
            raise self._forbid("blocked", f"user {target} blocked user {actor}", field)

    async def _read_store(self, function: Callable[[], Any]) -> Any:
        try:
            return await run_in_threadpool(function)
        except redis.RedisError as error:
            raise GatewayError(
                503, "store_unavailable", f"the store did not answer: {error}"
            ) from None

    async def get_timeline(self, request: Request) -> Response:
        user_id = await self._owner(request)
        limit = parse_limit(
            request.query_params.get("limit"), self.settings.default_limit, self.settings.max_limit
        )
        before_text = request.query_params.get("before")
        before = parse_id(before_text, "query.before") if before_text is not None else None

        page = await self._read_store(lambda: self.timeline(user_id, limit, before))
        # Tweet bodies expire before timelines do: an id without one is still served.
        entries = [
            {"tweet_id": tweet_id, "tweet": msgspec.Raw(body) if body is not None else None}
            for tweet_id, body in page.tweets
        ]
        return json_response(
            {"user_id": user_id, "tweets": entries, "next_before": page.next_before}
        )

    async def get_notifications(self, request: Request) -> Response:
        user_id = await self._owner(request)
        limit = parse_limit(
            request.query_params.get("limit"), self.settings.default_limit, self.settings.max_limit
        )

        def read() -> list[msgspec.Raw]:
            members: Any = self.store.zrevrange(keys.inbox(user_id), 0, limit - 1)
            return [msgspec.Raw(member) for member in members]

        entries = await self._read_store(read)
        return json_response({"user_id": user_id, "notifications": entries})

    async def get_who_to_follow(self, request: Request) -> Response:
        """The latest who-to-follow list the recommendations DAG made for the requester
        (kept by the timelines service); empty, `time_ms` null, before its first run."""
        user_id = await self._owner(request)
        stored: Any = await self._read_store(
            lambda: self.store.hmget(keys.who_to_follow(user_id), "time_ms", "items")
        )
        time_ms, items = stored
        return json_response(
            {
                "user_id": user_id,
                "time_ms": int(time_ms) if time_ms is not None else None,
                "accounts": msgspec.Raw(items) if items is not None else [],
            }
        )

    async def get_openapi(self, _request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def get_trends(self, _request: Request) -> Response:
        # `trends` (detected, latest closed window) needs a closed window and history;
        # `current` (the open window's leaders) shows data within seconds of traffic.
        def read() -> tuple[Any, CurrentWindow | None]:
            return self.store.get(keys.TRENDS_CURRENT), current_leaders(self.store)

        raw, current = await self._read_store(read)
        return json_response(
            {"trends": msgspec.Raw(raw) if raw is not None else [], "current": current}
        )

    async def get_stream(self, request: Request) -> Response:
        user_id = await self._owner(request)
        if self.health.stopping:
            raise GatewayError(503, "stopping", "the gateway is stopping; reconnect to another pod")
        last_event_id = request.headers.get("last-event-id") or request.query_params.get(
            "last_event_id"
        )
        if last_event_id is not None and len(last_event_id) > MAX_EVENT_ID:
            last_event_id = last_event_id[:MAX_EVENT_ID]  # unknown either way: resync
        try:
            subscription = self.hub.subscribe(user_id, last_event_id)
        except UserStreamsFullError as error:
            raise GatewayError(429, "too_many_streams", str(error)) from None
        except HubFullError as error:
            raise GatewayError(503, "too_many_streams", str(error), reason="pod_full") from None
        self.metrics.streams.inc()
        if subscription.resumed is not None:
            self.metrics.resumes.labels(subscription.resumed).inc()
        return StreamingResponse(
            self._events(subscription), media_type="text/event-stream", headers=SSE_HEADERS
        )

    async def _events(self, subscription: Subscription) -> AsyncIterator[bytes]:
        self._follow_opened(subscription.user_id)
        try:
            yield SSE_PREAMBLE
            for frame in subscription.backlog:
                yield frame
            subscription.backlog = []
            while True:
                try:
                    frame = await asyncio.wait_for(
                        subscription.queue.get(), self.settings.heartbeat_s
                    )
                except TimeoutError:
                    yield SSE_HEARTBEAT
                    continue
                yield frame
                if Subscription.is_closing(frame):
                    return
        finally:
            self._follow_left(subscription.user_id)
            self.hub.unsubscribe(subscription)
            self.metrics.streams.dec()


def _tag_of(body: bytes) -> Any:
    try:
        return _type_decoder.decode(body).type
    except msgspec.MsgspecError:
        return None
