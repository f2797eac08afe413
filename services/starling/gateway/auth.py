"""Who is asking: signed tokens verified against the issuer's published keys, or (by
explicit choice) an identity header set by a trusted ingress.

Token mode follows `starling.identity.contract`: a JWT signed with one of
`ACCEPTED_ALGORITHMS`, found in `Authorization: Bearer` or else the session cookie,
verified by PyJWT against the issuer's JWKS for signature, `iss`, `aud`, `exp`, `nbf`
and `iat`; `sub` is the Starling user id. Three caches keep this off the hot path:

* the key set, fetched from `jwks_url` (or the discovery document's `jwks_uri`), re-read
  every `jwks_refresh_s`, and re-read when a token names a `kid` it does not hold, at
  most once per `jwks_min_refetch_s` (a request with an unknown kid waits for that
  refetch rather than failing, so a rotation is invisible to signed-in users);
* verified tokens (bounded LRU), each entry valid until the token's own `exp`;
* per cached token, the answer "not revoked", re-asked from the store at most every
  `revocation_recheck_s` when revocation is on.

Every refusal is an AuthError with one of the contract's reason codes; nothing here logs
a token, only reasons and key ids.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import jwt
import redis
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    InvalidSubjectError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWKError,
    PyJWKSetError,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from starling.gateway.settings import GatewaySettings, IpNetwork
from starling.identity.contract import (
    ACCEPTED_ALGORITHMS,
    DISCOVERY_PATH,
    REQUIRED_CLAIMS,
    SESSION_CLAIM,
    SESSION_COOKIE,
)
from starling.store import keys

log = logging.getLogger("starling.gateway.auth")

MAX_USER_ID: Final = 2**63 - 1
# A JWKS or discovery document larger than this is not one; refuse rather than parse it.
MAX_DOCUMENT_BYTES: Final = 1_000_000
# Longer than any sane access token: refused before any parsing.
MAX_TOKEN_CHARS: Final = 8192

# The contract's reason codes (the JSON error's `reason`).
REASONS: Final = (
    "missing",
    "malformed",
    "unsupported_algorithm",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "bad_subject",
    "revoked",
    # header mode: the identity header came from a peer outside the trusted proxies
    "untrusted_peer",
)

# Which key types can verify which accepted algorithm: a JWKS entry without `alg` is
# used for a token's algorithm only when its type fits.
_KEY_TYPES: Final[dict[str, tuple[str, str | None]]] = {
    "EdDSA": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}


class AuthError(Exception):
    """The request does not prove an identity: 401 with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class AuthUnavailableError(Exception):
    """Identity cannot be decided right now (issuer or store unreachable): 503, not 401,
    so clients keep their tokens and retry."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    # Set by the built-in issuer; what sign-out revokes.
    session_id: str | None = None
    # Unix time after which the token (with leeway) is no longer accepted.
    expires_at: float = math.inf
    key_id: str | None = None


def parse_subject(value: object) -> int:
    if (
        not isinstance(value, str)
        or not value.isascii()
        or not value.isdigit()
        or len(value) > 19
        or not 1 <= int(value) <= MAX_USER_ID
    ):
        raise AuthError("bad_subject", "`sub` must be a Starling user id (decimal, 1..2^63-1)")
    return int(value)


def bearer_token(request: HTTPConnection) -> str:
    """The token from `Authorization: Bearer`, else from the session cookie."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("malformed", "the Authorization header must be `Bearer <token>`")
        token = token.strip()
        if not token:
            raise AuthError("malformed", "the Authorization header carries no token")
        return token
    cookie = request.cookies.get(SESSION_COOKIE)  # parsed only when there is no header
    if cookie:
        return cookie
    raise AuthError(
        "missing", f"no bearer token: send `Authorization: Bearer` or the {SESSION_COOKIE} cookie"
    )


class KeySet:
    """The issuer's public keys by `kid`, fetched over HTTP and kept fresh."""

    def __init__(
        self,
        settings: GatewaySettings,
        on_fetch: Callable[[str], None] = lambda _outcome: None,
        on_keys_removed: Callable[[frozenset[str]], None] = lambda _kids: None,
    ) -> None:
        assert settings.issuer is not None
        self._issuer = settings.issuer
        self._jwks_url = settings.jwks_url
        self._timeout_s = settings.jwks_timeout_s
        self._min_refetch_s = settings.jwks_min_refetch_s
        self._on_fetch = on_fetch
        self._on_keys_removed = on_keys_removed
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._generation = 0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.loaded = False

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._jwks)

    def _fetch_lock(self) -> asyncio.Lock:
        # One lock per event loop: tests drive the app from several successive loops.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def key(self, kid: str, algorithm: str) -> jwt.PyJWK:
        """The key for `kid` (refetching once if unknown), bound to `algorithm`."""
        jwk = self._jwks.get(kid)
        if jwk is None:
            await self._refetch_for_unknown_kid()
            jwk = self._jwks.get(kid)
            if jwk is None:
                raise AuthError("unknown_key", f"the issuer publishes no key {kid!r}")
        cached = self._keys.get((kid, algorithm))
        if cached is not None:
            return cached
        declared = jwk.get("alg")
        key_type, curve = _KEY_TYPES[algorithm]
        if (declared is not None and declared != algorithm) or (
            jwk.get("kty") != key_type or (curve is not None and jwk.get("crv") != curve)
        ):
            raise AuthError(
                "unsupported_algorithm", f"key {kid!r} is not a key for {algorithm} tokens"
            )
        try:
            key = jwt.PyJWK.from_dict(jwk, algorithm)
        except (PyJWKError, InvalidKeyError) as error:
            raise AuthError("unknown_key", f"key {kid!r} is not usable: {error}") from None
        self._keys[(kid, algorithm)] = key
        return key

    async def _refetch_for_unknown_kid(self) -> None:
        generation = self._generation
        async with self._fetch_lock():
            if self._generation != generation:
                return  # fetched while this request waited: look again, do not refetch
            # Waiting out the interval rather than refusing: during a rotation the first
            # tokens with the new kid are accepted a little late instead of refused.
            wait = self._fetched_at + self._min_refetch_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._fetch()

    async def refresh(self) -> None:
        """Re-read the key set now (the periodic refresh); keeps the old one on failure."""
        async with self._fetch_lock():
            await self._fetch()

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self._generation += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False) as http:
                url = self._jwks_url or await self._discover(http)
                document = await _get_json(http, url)
            jwks = _usable_keys(document)
        except (httpx.HTTPError, ValueError) as error:
            self._on_fetch("failed")
            log.warning("gateway: could not fetch the issuer's keys: %s", error)
            raise AuthUnavailableError(
                "issuer_unavailable", "the token issuer's keys could not be fetched; retry"
            ) from None
        removed = frozenset(self._jwks) - frozenset(jwks)
        self._jwks = jwks
        self._keys = {ref: key for ref, key in self._keys.items() if ref[0] in jwks}
        self.loaded = True
        self._on_fetch("ok")
        if removed:
            log.info("gateway: keys %s left the issuer's key set", sorted(removed))
            self._on_keys_removed(removed)

    async def _discover(self, http: httpx.AsyncClient) -> str:
        document = await _get_json(http, self._issuer.rstrip("/") + DISCOVERY_PATH)
        if document.get("issuer") != self._issuer:
            raise ValueError(
                f"the discovery document names issuer {document.get('issuer')!r},"
                f" not {self._issuer!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError("the discovery document has no jwks_uri")
        # Found once: the discovery document names the same key set for the issuer's life.
        self._jwks_url = jwks_uri
        return jwks_uri


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await http.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return document


def _usable_keys(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """kid -> JWK for the signature keys usable with an accepted algorithm. Symmetric
    (`oct`) keys, encryption keys, private keys and keys without a kid are left out."""
    try:
        # PyJWT parses every entry and skips those it cannot use.
        parsed = jwt.PyJWKSet.from_dict(document)
    except PyJWKSetError as error:
        raise ValueError(f"not a usable JWKS: {error}") from None
    parsed_ids = {key.key_id for key in parsed}
    usable: dict[str, dict[str, Any]] = {}
    for jwk in document.get("keys", []):
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid not in parsed_ids:
            continue
        if jwk.get("use") not in (None, "sig") or "d" in jwk:
            continue  # a private key is never published; an encryption key verifies nothing
        if jwk.get("kty") not in ("OKP", "EC", "RSA"):
            continue  # shared secrets never verify tokens
        declared = jwk.get("alg")
        if declared is not None and declared not in ACCEPTED_ALGORITHMS:
            continue
        usable[kid] = jwk
    if not usable:
        raise ValueError("the JWKS holds no signature key for an accepted algorithm")
    return usable


@dataclass(slots=True)
class _Verified:
    principal: Principal
    # When the store last said this token's session is not revoked (monotonic).
    checked_at: float


class TokenVerifier:
    """Token -> Principal, or AuthError; see the module docstring for the caches."""

    def __init__(
        self,
        settings: GatewaySettings,
        store: redis.Redis,
        on_fetch: Callable[[str], None] = lambda _outcome: None,
        on_cache: Mapping[str, Callable[[], None]] | None = None,
    ) -> None:
        assert settings.issuer is not None and settings.audience is not None
        self.settings = settings
        self._store = store
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._leeway = settings.leeway_s
        self._max_entries = settings.token_cache_size
        self._revocation = settings.revocation == "store"
        self._recheck_s = settings.revocation_recheck_s
        self._on_hit = (on_cache or {}).get("hit", _nothing)
        self._on_miss = (on_cache or {}).get("miss", _nothing)
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self.keys = KeySet(settings, on_fetch, self._forget_keys)

    def __len__(self) -> int:
        return len(self._cache)

    async def verify(self, token: str) -> Principal:
        entry = self._cache.get(token)
        if entry is not None:
            if time.time() < entry.principal.expires_at:
                self._cache.move_to_end(token)
                self._on_hit()
                if self._revocation and entry.principal.session_id is not None:
                    now = time.monotonic()
                    if now - entry.checked_at >= self._recheck_s:
                        await self._refuse_if_revoked(token, entry.principal.session_id)
                        entry.checked_at = now
                return entry.principal
            del self._cache[token]  # expired: verified again, which says so
        self._on_miss()
        principal = await self._verify_fully(token)
        checked_at = time.monotonic()
        if self._revocation and principal.session_id is not None:
            await self._refuse_if_revoked(token, principal.session_id)
        self._cache[token] = _Verified(principal, checked_at)
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return principal

    async def _verify_fully(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed", f"a token is at most {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise AuthError("malformed", "not a JWT (header.payload.signature)") from None
        algorithm = header.get("alg")
        # Decided before any key is looked up: `none` and shared-secret algorithms are
        # refused whatever key set the issuer publishes.
        if algorithm not in ACCEPTED_ALGORITHMS:
            accepted = ", ".join(ACCEPTED_ALGORITHMS)
            raise AuthError(
                "unsupported_algorithm", f"alg {algorithm!r} is not accepted (only {accepted})"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("unknown_key", "the token's header names no key (`kid`)")
        key = await self.keys.key(kid, algorithm)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_sub": True},
            )
        except InvalidTokenError as error:
            raise _refusal(error) from None
        user_id = parse_subject(claims.get("sub"))
        session = claims.get(SESSION_CLAIM)
        if session is not None and (not isinstance(session, str) or not session):
            raise AuthError("malformed", f"`{SESSION_CLAIM}` must be a non-empty string")
        return Principal(
            user_id=user_id,
            session_id=session,
            expires_at=float(claims["exp"]) + self._leeway,
            key_id=kid,
        )

    async def _refuse_if_revoked(self, token: str, session_id: str) -> None:
        try:
            revoked = await run_in_threadpool(self._store.exists, keys.revoked_session(session_id))
        except redis.RedisError as error:
            raise AuthUnavailableError(
                "store_unavailable", f"could not check the session against sign-outs: {error}"
            ) from None
        if revoked:
            self._cache.pop(token, None)
            raise AuthError("revoked", "this session was signed out")

    def _forget_keys(self, removed: frozenset[str]) -> None:
        # A key the issuer no longer publishes vouches for nothing, even cached.
        for token, entry in list(self._cache.items()):
            if entry.principal.key_id in removed:
                del self._cache[token]


def _nothing() -> None:
    pass


def _refusal(error: InvalidTokenError) -> AuthError:
    # Subclasses before their bases: InvalidSignatureError is a DecodeError.
    mapping: tuple[tuple[type[InvalidTokenError], str], ...] = (
        (InvalidSignatureError, "bad_signature"),
        (ExpiredSignatureError, "expired"),
        (ImmatureSignatureError, "not_yet_valid"),
        (InvalidIssuerError, "wrong_issuer"),
        (InvalidAudienceError, "wrong_audience"),
        (MissingRequiredClaimError, "missing_claim"),
        (InvalidSubjectError, "bad_subject"),
        (InvalidAlgorithmError, "unsupported_algorithm"),
        (InvalidIssuedAtError, "malformed"),
        (DecodeError, "malformed"),
    )
    for error_type, reason in mapping:
        if isinstance(error, error_type):
            return AuthError(reason, str(error))
    return AuthError("malformed", str(error))


class TrustedHeader:
    """Header mode: the ingress's identity header, believed only from its addresses."""

    def __init__(self, networks: tuple[IpNetwork, ...], header: str) -> None:
        self._networks = networks
        self._header = header
        self._trusted: dict[str, bool] = {}

    def trusted(self, peer: str | None) -> bool:
        if peer is None:
            return False
        answer = self._trusted.get(peer)
        if answer is None:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                answer = False
            else:
                answer = any(address in network for network in self._networks)
            if len(self._trusted) < 10_000:
                self._trusted[peer] = answer
        return answer

    def principal(self, peer: str | None, headers: Mapping[str, str]) -> Principal:
        if not self.trusted(peer):
            raise AuthError(
                "untrusted_peer",
                "this gateway takes identity only from its trusted proxies; this request"
                " did not come through one",
            )
        value = headers.get(self._header)
        if value is None:
            raise AuthError("missing", f"missing {self._header} header (set by the ingress)")
        try:
            return Principal(parse_subject(value))
        except AuthError:
            raise AuthError("bad_subject", f"{self._header} must be a Starling user id") from None
