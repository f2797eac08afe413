"""The token contract between whoever issues tokens and the gateway that verifies them.

Defined once here so the built-in identity service (`starling run identity`) and the
gateway cannot drift apart. Any OIDC provider works with the gateway as long as its access
tokens are JWTs signed with one of `ACCEPTED_ALGORITHMS`, carry `iss`, `aud`, `sub`
(the Starling user id, decimal), `exp` and `iat` (and `nbf` when present), and its keys
are published as a JWKS at the discovery document's `jwks_uri`.
"""

from __future__ import annotations

from typing import Final

# Asymmetric algorithms only: a shared-secret (HS*) or unsigned (`none`) token is refused
# whatever its header says, so a leaked verification key can never mint tokens.
ACCEPTED_ALGORITHMS: Final[tuple[str, ...]] = ("EdDSA", "ES256", "RS256", "PS256")
# What the built-in identity service signs with: Ed25519 keys derive deterministically
# from 32 bytes of the stack's secret seed, so every replica signs with the same key.
SIGNING_ALGORITHM: Final = "EdDSA"
# Claims every token must carry for the gateway to accept it.
REQUIRED_CLAIMS: Final[tuple[str, ...]] = ("iss", "aud", "sub", "exp", "iat")
# The built-in service's session id claim: sign-out revokes it (see `revoked_session`).
SESSION_CLAIM: Final = "sid"
# Browsers (and EventSource, which cannot set headers) send the token in this cookie:
# HttpOnly, Secure, SameSite=Strict, Path=/.
SESSION_COOKIE: Final = "starling_session"
# Discovery and key set paths the built-in service serves (OIDC Discovery 1.0).
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
JWKS_PATH: Final = "/.well-known/jwks.json"
