"""Signing keys: derived from the seed per key id, published as a JWKS, rotatable."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from starling.identity.keys import KeyRing, TokenError, derive_private_key

pytestmark = pytest.mark.unit

SEED = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
ISSUER = "https://identity.example"
AUDIENCE = "starling"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "sid": "session-1",
        **overrides,
    }


def test_same_seed_and_key_id_give_the_same_key() -> None:
    first = raw_public(derive_private_key(SEED, "k1"))
    assert first == raw_public(derive_private_key(bytes(SEED), "k1"))
    assert first != raw_public(derive_private_key(SEED, "k2"))
    assert first != raw_public(derive_private_key(SEED[:-1] + b"0", "k1"))


def test_derivation_is_the_contract() -> None:
    # The contract in starling.identity.contract, spelled out independently.
    digest = hmac.new(SEED, b"starling-identity-signing-key:k1", hashlib.sha256).digest()
    expected = Ed25519PrivateKey.from_private_bytes(digest)
    assert raw_public(derive_private_key(SEED, "k1")) == raw_public(expected)


def test_jwks_publishes_every_key_and_verifies_with_pyjwt() -> None:
    ring = KeyRing(SEED, ["k2", "k1"])
    jwks = ring.jwks()
    assert [key["kid"] for key in jwks["keys"]] == ["k2", "k1"]
    assert all(key["kty"] == "OKP" and key["crv"] == "Ed25519" for key in jwks["keys"])
    assert all(key["alg"] == "EdDSA" and key["use"] == "sig" for key in jwks["keys"])
    assert all("d" not in key for key in jwks["keys"]), "the private part is never published"
    token = ring.sign(claims())
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": "k2", "typ": "JWT"}
    # A verifier that knows only the JWKS (as the gateway) accepts it.
    key_set = jwt.PyJWKSet.from_dict(jwks)
    decoded = jwt.decode(
        token, key_set["k2"].key, algorithms=["EdDSA"], issuer=ISSUER, audience=AUDIENCE
    )
    assert decoded["sub"] == "42"


def test_rotation_keeps_tokens_signed_before_it_valid() -> None:
    before = KeyRing(SEED, ["k1"])
    old_token = before.sign(claims(sid="old"))
    # Rotation: a new key id first, the old one still listed (and so still published).
    during = KeyRing(SEED, ["k2", "k1"])
    assert during.signing.key_id == "k2"
    assert during.verify(old_token, issuer=ISSUER, audience=AUDIENCE)["sid"] == "old"
    new_token = during.sign(claims(sid="new"))
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    # The published k1 is the same key as before rotation (derived, not generated).
    assert during.jwks()["keys"][1] == before.jwks()["keys"][0]
    # Once the old id is dropped (after the token TTL), its tokens are refused.
    after = KeyRing(SEED, ["k2"])
    with pytest.raises(TokenError) as caught:
        after.verify(old_token, issuer=ISSUER, audience=AUDIENCE)
    assert caught.value.reason == "unknown_key"
    assert after.verify(new_token, issuer=ISSUER, audience=AUDIENCE)["sid"] == "new"


# Claims are built when the test runs, not at collection: a long session would otherwise
# expire every token before its test starts. Each case: (time offsets, overrides, dropped).
@pytest.mark.parametrize(
    ("offsets", "overrides", "dropped", "reason"),
    [
        ({"exp": -10}, {}, None, "expired"),
        ({"nbf": 600}, {}, None, "not_yet_valid"),
        ({}, {"iss": "https://elsewhere.example"}, None, "wrong_issuer"),
        ({}, {"aud": "someone-else"}, None, "wrong_audience"),
        ({}, {}, "sid", "missing_claim"),
        ({}, {}, "exp", "missing_claim"),
    ],
)
def test_verify_names_the_reason(
    offsets: dict[str, int], overrides: dict[str, Any], dropped: str | None, reason: str
) -> None:
    now = int(time.time())
    token_claims = claims(**{name: now + offset for name, offset in offsets.items()}, **overrides)
    token_claims.pop(dropped or "", None)
    ring = KeyRing(SEED, ["k1"])
    with pytest.raises(TokenError) as caught:
        ring.verify(ring.sign(token_claims), issuer=ISSUER, audience=AUDIENCE)
    assert caught.value.reason == reason


def test_verify_refuses_forged_and_malformed_tokens() -> None:
    ring = KeyRing(SEED, ["k1"])
    other = KeyRing(b"another seed of at least thirty-two bytes!", ["k1"])
    reasons = {}
    forged = other.sign(claims())  # right kid, wrong key
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    hmac_token = jwt.encode(claims(), "k" * 32, algorithm="HS256", headers={"kid": "k1"})
    for name, token in [
        ("forged", forged),
        ("none", unsigned),
        ("hs256", hmac_token),
        ("garbage", "not-a-jwt"),
    ]:
        with pytest.raises(TokenError) as caught:
            ring.verify(token, issuer=ISSUER, audience=AUDIENCE)
        reasons[name] = caught.value.reason
    assert reasons == {
        "forged": "bad_signature",
        "none": "unsupported_algorithm",
        "hs256": "unsupported_algorithm",
        "garbage": "malformed",
    }


def test_key_material_never_shows_in_reprs() -> None:
    ring = KeyRing(SEED, ["k1"])
    assert repr(ring.signing) == "SigningKey('k1')"
