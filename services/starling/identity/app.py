"""The identity service's HTTP API (Starlette): accounts, sessions, keys.

* `POST /v1/accounts` {username, password}: 201 {user_id, username}; 403 when sign-up is
  off, 409 when the name is taken;
* `POST /v1/sessions` {username, password, device_id?, platform?}: 201 with a signed
  access token and the `starling_session` cookie; 401 `invalid_credentials` (the same for
  an unknown name as for a wrong password); 429 `rate_limited` with `Retry-After`;
* `DELETE /v1/sessions/current` (Bearer token or cookie): 204, the session revoked and
  the cookie cleared;
* `GET /.well-known/openid-configuration`, `GET /.well-known/jwks.json`, `GET /openapi.json`.

Every sign-in attempt, whatever its outcome, is recorded as a `UserLogin` (v2) on
`user.logins` and answered only once Kafka acknowledged it (503 otherwise): a sign-in the
login DAG never hears about does not happen. Errors are JSON `{"error", "reason", "field",
"message"}`. Nothing here logs a password, a hash, a token or the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final, TypeVar

import anyio
import msgspec
import redis
from argon2 import PasswordHasher, Type
from msgspec import Meta
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from starling.events import LoginOutcome, Platform, UserLogin, encode, new_event
from starling.events.schemas import Handle
from starling.identity.accounts import Account, Accounts, NameTakenError
from starling.identity.addresses import ClientOrigin, ClientResolver
from starling.identity.contract import (
    DISCOVERY_PATH,
    JWKS_PATH,
    REQUIRED_CLAIMS,
    SESSION_CLAIM,
    SESSION_COOKIE,
    SIGNING_ALGORITHM,
)
from starling.identity.keys import KeyRing, TokenError, read_seed
from starling.identity.limits import Limit, SlidingWindow
from starling.identity.metrics import IdentityMetrics
from starling.identity.settings import IdentitySettings
from starling.runtime.config import RuntimeSettings
from starling.runtime.eventtime import timestamp_ms
from starling.services.common import StoreReadiness
from starling.store import keys
from starling.store.client import connect
from starling.topics import LOGINS
from starling.web.errors import JSON_MEDIA_TYPE, ApiError, json_response
from starling.web.heads import HeadSizeLimit
from starling.web.health import ProducerHealth
from starling.web.producer import AckingProducer, NotAcknowledgedError

log = logging.getLogger("starling.identity")

# Credentials and a few optional fields fit many times over; anything larger is not ours.
MAX_BODY_BYTES: Final = 4 * 1024
# The request line and headers together: a large cookie and a token fit many times over.
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_USER_AGENT: Final = 512
OPENAPI_RESOURCE: Final = "openapi.json"
# Argon2 itself takes any length; the cap only bounds the work one request can ask for.
MAX_PASSWORD_CHARS: Final = 1024
# NIST SP 800-63B: at least 8 characters for a password the user chose.
MIN_NEW_PASSWORD_CHARS: Final = 8

_AT_FIELD = re.compile(r" - at `(\$[^`]*)`$")
_encoder = msgspec.json.Encoder()

Password = Annotated[str, Meta(min_length=1, max_length=MAX_PASSWORD_CHARS)]
NewPassword = Annotated[str, Meta(min_length=MIN_NEW_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)]


class SignUpRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: Handle
    password: NewPassword


class SignInRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: Handle
    password: Password
    device_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    platform: Platform | None = None


RequestT = TypeVar("RequestT", SignUpRequest, SignInRequest)


def token_error(error: TokenError) -> ApiError:
    """401 naming the reason, with the RFC 6750 challenge."""
    challenge = f'Bearer error="invalid_token", error_description="{error.reason}"'
    return ApiError(
        401,
        "unauthenticated",
        error.message,
        reason=error.reason,
        headers={"WWW-Authenticate": challenge},
    )


def decode_request(body: bytes, request_type: type[RequestT]) -> RequestT:
    try:
        return msgspec.json.decode(body, type=request_type)
    except msgspec.ValidationError as error:
        text = str(error)
        match = _AT_FIELD.search(text)
        field = match.group(1) if match else None
        message = _AT_FIELD.sub("", text)
        raise ApiError(400, "invalid", message, field=field) from None
    except msgspec.DecodeError as error:
        raise ApiError(400, "malformed", f"the body is not JSON: {error}") from None


def cors_middleware(origins: list[str]) -> list[Middleware]:
    """CORS for exactly `origins` (the pages that sign users in from a browser), with
    credentials so the session cookie a sign-in sets is kept; nothing when none is listed,
    so other origins get no CORS headers at all and the browser refuses their reads."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    ]


def load_openapi() -> bytes:
    """The checked-in OpenAPI document, shipped in this package."""
    return importlib.resources.files("starling.identity").joinpath(OPENAPI_RESOURCE).read_bytes()


class Identity:
    """Everything one identity pod runs; `app` is the ASGI application to serve."""

    def __init__(
        self,
        runtime: RuntimeSettings,
        settings: IdentitySettings,
        *,
        producer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.metrics = IdentityMetrics()
        self.keys = KeyRing(read_seed(settings.seed_file), settings.signing_keys)
        self.store: redis.Redis = connect(**runtime.redis_kwargs())
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self.accounts = Accounts(
            self.store,
            self.hasher,
            demo_users=settings.demo_users if settings.dev_mode else 0,
        )
        self.limits = SlidingWindow(self.store, settings.signin_window_s)
        self.resolver = ClientResolver(settings.trusted_proxies)
        self.logins_topic = runtime.topic(LOGINS)
        self.producer = AckingProducer(
            {**runtime.producer_config(), **(producer_overrides or {})},
            settings.ack_timeout_s,
            probe_topic=self.logins_topic,
        )
        self.health = ProducerHealth(stall_after_s=30.0, producer=self.producer)
        store_ready = StoreReadiness(self.store)
        self.health.store_check = lambda: store_ready() and self.producer.reachable()
        # Argon2id holds `argon2_memory_kib` per hash: bound how many run at once.
        self._hashing = anyio.CapacityLimiter(settings.max_concurrent_hashes)
        self._openapi = load_openapi()
        self._discovery = _encoder.encode(self.discovery_document())
        self._jwks = _encoder.encode(self.keys.jwks())
        self.app = Starlette(
            routes=[
                Route(
                    "/v1/accounts", self.metrics.endpoint("signup", self.sign_up), methods=["POST"]
                ),
                Route(
                    "/v1/sessions", self.metrics.endpoint("signin", self.sign_in), methods=["POST"]
                ),
                Route(
                    "/v1/sessions/current",
                    self.metrics.endpoint("signout", self.sign_out),
                    methods=["DELETE"],
                ),
                Route(DISCOVERY_PATH, self.metrics.endpoint("discovery", self.get_discovery)),
                Route(JWKS_PATH, self.metrics.endpoint("jwks", self.get_jwks)),
                Route("/openapi.json", self.metrics.endpoint("openapi", self.get_openapi)),
            ],
            exception_handlers={HTTPException: ApiError.for_http_exception},
            middleware=[
                Middleware(HeadSizeLimit, max_bytes=MAX_HEADER_BYTES),
                *cors_middleware(settings.allowed_origins),
            ],
            lifespan=self._lifespan,
        )

    def discovery_document(self) -> dict[str, Any]:
        base = self.settings.issuer_base
        return {
            "issuer": self.settings.issuer,
            "jwks_uri": base + JWKS_PATH,
            "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
            "subject_types_supported": ["public"],
            "claims_supported": [*REQUIRED_CLAIMS, "nbf", SESSION_CLAIM, "preferred_username"],
        }

    # ------------------------------------------------------------------ lifecycle

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.producer.start()
        beat = asyncio.create_task(self.health.keep_beating())
        self.health.joined = True
        log.info(
            "identity: serving issuer %s; signing key %r, published keys %s; logins to %s",
            self.settings.issuer,
            self.keys.signing.key_id,
            list(self.keys.keys),
            self.logins_topic,
        )
        try:
            yield
        finally:
            self.health.stopping = True
            beat.cancel()
            await run_in_threadpool(self._close)

    def _close(self) -> None:
        self.producer.close()
        self.store.close()

    # ------------------------------------------------------------------ plumbing

    async def _json_body(self, request: Request) -> bytes:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"the body must be {JSON_MEDIA_TYPE}, got {media_type or 'no content type'!r}",
                field="header.content-type",
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"{declared} bytes exceeds the {MAX_BODY_BYTES} limit")
        body = bytearray()
        # Chunked bodies declare no length: stop reading as soon as the limit is passed.
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, "too_large", f"more than the {MAX_BODY_BYTES}-byte limit")
        return bytes(body)

    async def _in_store(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(function, *args)
        except redis.RedisError as error:
            raise ApiError(
                503, "store_unavailable", f"the store did not answer: {type(error).__name__}"
            ) from None

    async def _hashing_in_store(self, function: Callable[..., Any], *args: Any) -> Any:
        """A blocking call that hashes (and may touch the store), under the hash limit."""
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._hashing)
        except redis.RedisError as error:
            raise ApiError(
                503, "store_unavailable", f"the store did not answer: {type(error).__name__}"
            ) from None

    def _origin(self, request: Request) -> ClientOrigin:
        peer = request.client.host if request.client is not None else None
        return self.resolver.resolve(peer, request.headers)

    # ------------------------------------------------------------------ accounts

    async def sign_up(self, request: Request) -> Response:
        if not self.settings.signup:
            raise ApiError(
                403, "signup_disabled", "sign-up is off on this stack (STARLING_IDENTITY_SIGNUP)"
            )
        wanted = decode_request(await self._json_body(request), SignUpRequest)
        origin = self._origin(request)
        verdict = await self._in_store(
            self.limits.attempt,
            [
                Limit(
                    "signup",
                    keys.identity_attempts("signup", origin.address),
                    self.settings.signin_per_address,
                )
            ],
            secrets.token_hex(8),
        )
        if not verdict.admitted:
            self.metrics.rate_limited.labels("signup").inc()
            raise _rate_limited("address", verdict.retry_after_s)
        try:
            account = await self._hashing_in_store(
                self.accounts.create, wanted.username, wanted.password
            )
        except NameTakenError as error:
            raise ApiError(409, "taken", str(error), field="$.username") from None
        self.metrics.signups.inc()
        return json_response({"user_id": account.user_id, "username": account.username}, 201)

    # ------------------------------------------------------------------ sessions

    async def sign_in(self, request: Request) -> Response:
        credentials = decode_request(await self._json_body(request), SignInRequest)
        origin = self._origin(request)
        user_agent = request.headers.get("user-agent", "")[:MAX_USER_AGENT]
        name = credentials.username.lower()
        settings = self.settings
        verdict = await self._in_store(
            self.limits.attempt,
            [
                Limit(
                    "account", keys.identity_attempts("account", name), settings.signin_per_account
                ),
                Limit(
                    "address",
                    keys.identity_attempts("address", origin.address),
                    settings.signin_per_address,
                ),
            ],
            secrets.token_hex(8),
        )
        if not verdict.admitted:
            assert verdict.scope is not None
            self.metrics.rate_limited.labels(verdict.scope).inc()
            # Refused before any password check; the account (if any) is named so the
            # login DAG can count the burst against it.
            account = await self._in_store(self.accounts.find, credentials.username)
            await self._record(
                LoginOutcome.RATE_LIMITED,
                credentials,
                account,
                origin,
                user_agent,
                failure_reason=f"{verdict.scope}_limit",
            )
            raise _rate_limited(verdict.scope, verdict.retry_after_s)

        account = await self._in_store(self.accounts.find, credentials.username)
        verified = await self._hashing_in_store(self.accounts.verify, account, credentials.password)
        if not verified:
            outcome = LoginOutcome.UNKNOWN_ACCOUNT if account is None else LoginOutcome.BAD_PASSWORD
            await self._record(outcome, credentials, account, origin, user_agent)
            raise ApiError(
                401,
                "invalid_credentials",
                "the name or the password is wrong",
                headers={"WWW-Authenticate": 'Bearer realm="starling"'},
            )
        assert account is not None
        session_id = secrets.token_urlsafe(24)
        now = int(time.time())
        ttl = settings.token_ttl_s
        token = self.keys.sign(
            {
                "iss": settings.issuer,
                "aud": settings.audience,
                "sub": str(account.user_id),
                "iat": now,
                "nbf": now,
                "exp": now + ttl,
                SESSION_CLAIM: session_id,
                "preferred_username": account.username,
            }
        )
        await self._record(LoginOutcome.SUCCEEDED, credentials, account, origin, user_agent)
        response = json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "user_id": account.user_id,
                "session_id": session_id,
            },
            201,
            # Tokens are credentials: no cache may keep one (RFC 6749 §5.1).
            {"Cache-Control": "no-store"},
        )
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=ttl,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        # After the answer: a new hash when the cost parameters changed since the last one.
        response.background = BackgroundTask(self._rehash, account, credentials.password)
        return response

    async def _rehash(self, account: Account, password: str) -> None:
        try:
            if await self._hashing_in_store(self.accounts.rehash_if_needed, account, password):
                log.info("identity: rehashed the password of user %d", account.user_id)
        except ApiError:
            log.warning("identity: could not rehash user %d: store unavailable", account.user_id)

    async def _record(
        self,
        outcome: LoginOutcome,
        credentials: SignInRequest,
        account: Account | None,
        origin: ClientOrigin,
        user_agent: str,
        failure_reason: str | None = None,
    ) -> None:
        """The attempt as a login on `user.logins`, acknowledged; ApiError 503 if not."""
        login = new_event(
            UserLogin,
            user_id=account.user_id if account is not None else None,
            username=credentials.username,
            outcome=outcome,
            success=outcome is LoginOutcome.SUCCEEDED,
            ip=origin.address,
            user_agent=user_agent,
            country=origin.country,
            device_id=credentials.device_id,
            platform=credentials.platform,
            failure_reason=failure_reason,
        )
        try:
            await self.producer.send(
                self.logins_topic,
                login.partition_key(),
                encode(login),
                timestamp_ms(login.event_time),
            )
        except NotAcknowledgedError:
            self.metrics.not_acknowledged.inc()
            raise ApiError(
                503,
                "not_acknowledged",
                "the sign-in attempt could not be recorded (Kafka did not acknowledge it);"
                " nothing was decided: retry",
            ) from None
        self.metrics.signin_attempts.labels(outcome.value).inc()

    async def sign_out(self, request: Request) -> Response:
        try:
            claims = self.keys.verify(
                _presented_token(request),
                issuer=self.settings.issuer,
                audience=self.settings.audience,
            )
        except TokenError as error:
            raise token_error(error) from None
        # Revoked until the token would have expired anyway; the gateway refuses it since.
        remaining = max(1, int(claims["exp"]) - int(time.time()))
        revoked = keys.revoked_session(claims[SESSION_CLAIM])
        await self._in_store(lambda: self.store.set(revoked, b"1", ex=remaining))
        self.metrics.signouts.inc()
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
        return response

    # ------------------------------------------------------------------ documents

    async def get_discovery(self, _request: Request) -> Response:
        return Response(self._discovery, media_type=JSON_MEDIA_TYPE)

    async def get_jwks(self, _request: Request) -> Response:
        # Short-lived caching: a verifier learns of a rotation's new key within a minute,
        # and verifiers refetch anyway when they see an unknown kid.
        return Response(
            self._jwks,
            media_type="application/jwk-set+json",
            headers={"Cache-Control": "max-age=60"},
        )

    async def get_openapi(self, _request: Request) -> Response:
        return Response(self._openapi, media_type=JSON_MEDIA_TYPE)


def _presented_token(request: Request) -> str:
    """The bearer token, else the session cookie; TokenError `missing`/`malformed`."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("malformed", "the Authorization header is not `Bearer <token>`")
        return token.strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie
    raise TokenError(
        "missing", f"no token: send `Authorization: Bearer <token>` or the {SESSION_COOKIE} cookie"
    )


def _rate_limited(scope: str, retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"too many attempts for this {scope}; retry in {retry_after_s} s",
        reason=scope,
        headers={"Retry-After": str(retry_after_s)},
    )
