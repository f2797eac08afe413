"""Signing keys derived from the stack's seed, the JWKS that publishes them, and tokens.

Every replica derives the same Ed25519 key for a key id from the same seed, so no key is
ever generated, stored or shipped: the seed Secret is the only secret. The derivation is
the contract in `starling.identity.contract` (HMAC-SHA256 of the seed over a fixed label
and the key id). Rotation lists a new key id first: it signs new tokens, and the old key
stays published (and accepted here) until it is dropped from the list.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from jwt.algorithms import OKPAlgorithm

from starling.identity.contract import REQUIRED_CLAIMS, SESSION_CLAIM, SIGNING_ALGORITHM

DERIVATION_LABEL: Final = b"starling-identity-signing-key:"


def read_seed(path: Path) -> bytes:
    """The seed's bytes, exactly as in the file (the contract derives from all of them)."""
    return path.read_bytes()


def derive_private_key(seed: bytes, key_id: str) -> Ed25519PrivateKey:
    digest = hmac.new(seed, DERIVATION_LABEL + key_id.encode(), hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(digest)


@dataclass(frozen=True, repr=False)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        jwk = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        assert isinstance(jwk, dict)
        return {**jwk, "kid": self.key_id, "use": "sig", "alg": SIGNING_ALGORITHM}

    def __repr__(self) -> str:
        # Never the key material, not even in a traceback's locals.
        return f"SigningKey({self.key_id!r})"


class TokenError(Exception):
    """A token this service cannot accept; `reason` is one of the contract's reason codes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class KeyRing:
    """The configured keys: the first signs, all verify and are published."""

    def __init__(self, seed: bytes, key_ids: Sequence[str]) -> None:
        if not key_ids:
            raise ValueError("at least one key id is needed")
        self.keys: dict[str, SigningKey] = {
            key_id: SigningKey(key_id, derive_private_key(seed, key_id)) for key_id in key_ids
        }
        self.signing = self.keys[key_ids[0]]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys.values()]}

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims),
            self.signing.private_key,
            algorithm=SIGNING_ALGORITHM,
            headers={"kid": self.signing.key_id},
        )

    def verify(self, token: str, *, issuer: str, audience: str) -> dict[str, Any]:
        """The claims of a token this service signed and that is still valid; TokenError
        naming the reason otherwise (the reasons the gateway uses too)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenError("malformed", "the token is not a well-formed JWT") from None
        if header.get("alg") != SIGNING_ALGORITHM:
            raise TokenError(
                "unsupported_algorithm", f"tokens of this issuer are signed {SIGNING_ALGORITHM}"
            )
        key = self.keys.get(str(header.get("kid")))
        if key is None:
            raise TokenError("unknown_key", "the token's kid names no key of this issuer")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[SIGNING_ALGORITHM],
                issuer=issuer,
                audience=audience,
                options={"require": [*REQUIRED_CLAIMS, SESSION_CLAIM]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong_issuer", "the token was issued by someone else") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong_audience", "the token is for another audience") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError("missing_claim", f"the token has no {error.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature", "the token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise TokenError("malformed", "the token is not a well-formed JWT") from None
        if not isinstance(claims[SESSION_CLAIM], str) or not claims[SESSION_CLAIM]:
            raise TokenError("missing_claim", f"the token's {SESSION_CLAIM!r} claim is empty")
        return claims
