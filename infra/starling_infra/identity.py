"""Who proves a user's identity to the gateway, and the gateway's side of it.

Three modes, decided by the stack config (`identity.*`, `gateway.trustUserHeader.*`):

- built-in (no `identity.issuerUrl`): the program deploys `starling run identity` from the
  services chart. Its signing keys derive from a seed of its own (HMAC of the stack seed, so
  it never holds the seed every other password comes from), kept in a Secret that the pod
  mounts as a file: never an environment value, which `kubectl describe` and crash dumps
  show. The gateway fetches the keys from the service's in-cluster address and honours
  sign-out through the store.
- external (`identity.issuerUrl`): any OIDC provider; the gateway verifies its tokens
  against its JWKS. No identity service, no revocation list (the provider's short token
  lifetime is the bound).
- header (`gateway.trustUserHeader.enabled`): an authenticating ingress sets the user
  header; only its proxy addresses count and only its namespaces reach the gateway's port.

This component owns the seed Secret; `identity_values` and `gateway_auth_values` are the
chart values the services release receives (charts/starling-services, values.schema.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from starling.identity.contract import JWKS_PATH
from starling_infra import meta
from starling_infra.config import StackConfig
from starling_infra.passwords import Purposes, derive_password

COMPONENT = "identity"


@dataclass(frozen=True)
class AuthValues:
    """What the services chart needs to know about identity, computed once from the config."""

    # Deploy the built-in identity service (services.identity.enabled).
    builtin: bool
    identity: dict[str, Any]
    trust_user_header: dict[str, Any]


def auth_values(config: StackConfig) -> AuthValues:
    return AuthValues(
        builtin=config.identity_deployed,
        identity=identity_values(config),
        trust_user_header=gateway_trust_values(config),
    )


def identity_values(config: StackConfig) -> dict[str, Any]:
    """The chart's `identity` section (built-in service settings and the issuer in use)."""
    identity = config.identity
    return {
        "issuerUrl": identity.issuer_url or "",
        "audience": identity.audience,
        "jwksUrl": identity.jwks_url or "",
        "publicUrl": config.identity_public_url if identity.builtin else "",
        "service": {"type": "ClusterIP", "port": meta.IDENTITY_PORT},
        "signingKeys": list(identity.signing_keys),
        "tokenTtlSeconds": identity.token_ttl_seconds,
        "signup": config.identity_signup,
        "devMode": config.identity_dev_mode,
        "demoUsers": identity.demo_users,
        "trustedProxies": list(identity.trusted_proxies),
        "seedSecret": {"name": meta.IDENTITY_SEED_SECRET, "key": meta.IDENTITY_SEED_KEY},
    }


def gateway_trust_values(config: StackConfig) -> dict[str, Any]:
    """The chart's `gateway.trustUserHeader` section."""
    trust = config.gateway.trust_user_header
    return {
        "enabled": trust.enabled,
        "proxies": list(trust.proxies),
        "namespaces": list(trust.namespaces),
    }


@dataclass(frozen=True)
class IdentityArgs:
    namespace: pulumi.Input[str]
    secret_seed: pulumi.Output[str]


class Identity(pulumi.ComponentResource):
    """The built-in identity service's seed Secret (the Deployment is the chart's)."""

    seed_secret: k8s.core.v1.Secret
    seed_secret_name: str
    # The in-cluster address the gateway fetches the JWKS from.
    jwks_url: str

    def __init__(
        self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:identity:Identity", name, None, opts)
        self.seed_secret_name = meta.IDENTITY_SEED_SECRET
        self.seed_secret = k8s.core.v1.Secret(
            f"{name}-seed",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=self.seed_secret_name,
                namespace=args.namespace,
                labels=meta.labels(meta.SERVICES_RELEASE, COMPONENT),
            ),
            type="Opaque",
            # 64 hex characters: the 32 bytes the identity service requires, twice over.
            string_data={
                meta.IDENTITY_SEED_KEY: derive_password(args.secret_seed, Purposes.IDENTITY_SEED)
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.jwks_url = f"{meta.IDENTITY_IN_CLUSTER_URL}{JWKS_PATH}"
        self.register_outputs({"seedSecretName": self.seed_secret_name, "jwksUrl": self.jwks_url})
