"""A real token issuer for tests: signing keys generated here, its JWKS and OIDC
discovery document served over real HTTP on 127.0.0.1, tokens signed with PyJWT.

Shared by the gateway's unit and integration tests (and anything else that needs a
signed-in user): nothing is mocked, the gateway fetches the keys as it would from
Keycloak or the built-in identity service.

    with TokenIssuer.start() as issuer:
        token = issuer.mint(7)
        settings = GatewaySettings(**issuer.gateway_settings())
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from starling.identity.contract import DISCOVERY_PATH, JWKS_PATH

AUDIENCE = "starling"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def new_key(kid: str, algorithm: str = "EdDSA") -> SigningKey:
    if algorithm == "EdDSA":
        return SigningKey(kid, algorithm, ed25519.Ed25519PrivateKey.generate())
    if algorithm in ("RS256", "PS256"):
        return SigningKey(kid, algorithm, rsa.generate_private_key(65537, 2048))
    raise ValueError(f"no test key type for {algorithm}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    """A token assembled by hand, for the forgeries a JWT library refuses to make."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


class TokenIssuer:
    """An OIDC issuer serving `/.well-known/openid-configuration` and its JWKS."""

    def __init__(self, server: ThreadingHTTPServer, audience: str) -> None:
        self._server = server
        self.audience = audience
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.issuer = self.url
        self.keys: dict[str, SigningKey] = {}
        # Key ids in the JWKS, in order; the first signs unless `mint` is told otherwise.
        self.published: list[str] = []
        self.jwks_requests = 0
        self.discovery_requests = 0
        # Extra keys served as-is (e.g. a symmetric `oct` key an attacker would love).
        self.extra_jwks: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=server.serve_forever, name="jwks", daemon=True)

    @classmethod
    def start(
        cls, audience: str = AUDIENCE, algorithms: tuple[str, ...] = ("EdDSA", "RS256")
    ) -> TokenIssuer:
        issuer_ref: list[TokenIssuer] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer = issuer_ref[0]
                if self.path == DISCOVERY_PATH:
                    issuer.discovery_requests += 1
                    body = issuer.discovery()
                elif self.path == JWKS_PATH:
                    with issuer._lock:
                        issuer.jwks_requests += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        issuer = cls(server, audience)
        issuer_ref.append(issuer)
        for index, algorithm in enumerate(algorithms):
            issuer.add_key(f"k{index + 1}-{algorithm.lower()}", algorithm)
        issuer._thread.start()
        return issuer

    def __enter__(self) -> TokenIssuer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # ------------------------------------------------------------------ keys

    def add_key(self, kid: str, algorithm: str = "EdDSA", publish: bool = True) -> SigningKey:
        key = new_key(kid, algorithm)
        self.keys[kid] = key
        if publish:
            self.publish(kid)
        return key

    def publish(self, kid: str, first: bool = False) -> None:
        with self._lock:
            if kid in self.published:
                self.published.remove(kid)
            self.published.insert(0 if first else len(self.published), kid)

    def unpublish(self, kid: str) -> None:
        with self._lock:
            self.published.remove(kid)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            published = list(self.published)
        return {"keys": [self.keys[kid].public_jwk() for kid in published] + self.extra_jwks}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.url + JWKS_PATH,
            "id_token_signing_alg_values_supported": ["EdDSA", "RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
        }

    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        """GatewaySettings fields for a gateway that trusts this issuer."""
        return {"auth": "token", "issuer": self.issuer, "audience": self.audience, **overrides}

    # ------------------------------------------------------------------ tokens

    def claims(
        self,
        sub: int | str,
        *,
        lifetime_s: float = 600,
        not_before_s: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(sub),
            "iat": now,
            "exp": now + int(lifetime_s),
            "preferred_username": f"u{sub}",
            # Unique per token, as issuers do: two tokens minted in one second differ.
            "jti": uuid.uuid4().hex,
        }
        if not_before_s is not None:
            claims["nbf"] = now + int(not_before_s)
        claims.update(extra)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(
        self,
        sub: int | str,
        *,
        kid: str | None = None,
        session: str | None = None,
        header: dict[str, Any] | None = None,
        without: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A token signed by `kid` (default: the first published key). Claim overrides as
        keywords; a claim set to None, or named in `without`, is left out."""
        key = self.keys[kid or self.published[0]]
        options = {"lifetime_s", "not_before_s"}
        body = self.claims(
            sub,
            **{name: claims.pop(name) for name in options & claims.keys()},
            sid=session,
        )
        body.update(claims)
        body = {
            name: value for name, value in body.items() if value is not None and name not in without
        }
        return jwt.encode(
            body, key.private, algorithm=key.algorithm, headers={"kid": key.kid, **(header or {})}
        )

    def session(self) -> str:
        return uuid.uuid4().hex

    def forge_none(self, sub: int) -> str:
        """`alg: none`, no signature."""
        return unsigned_token(
            {"alg": "none", "typ": "JWT", "kid": self.published[0]}, self.claims(sub), b""
        )

    def forge_hs256_with_public_key(self, sub: int) -> str:
        """The classic key-confusion forgery: HMAC keyed with the published public key."""
        key = self.keys[self.published[0]]
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        signing_input = (
            _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(self.claims(sub)).encode())
        )
        signature = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def forge_bad_signature(self, sub: int) -> str:
        """Signed by a key of the same kid and type that the issuer does not hold."""
        real = self.keys[self.published[0]]
        impostor = new_key(real.kid, real.algorithm)
        return jwt.encode(
            self.claims(sub), impostor.private, algorithm=real.algorithm, headers={"kid": real.kid}
        )
