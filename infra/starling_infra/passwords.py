"""Every password and key Starling needs, derived from the one secret seed.

Why derivation instead of `pulumi_random.RandomPassword`: the random provider is a plugin
binary that has to be downloaded, and the machines this kit is built and tested on can reach
package registries only. HMAC-SHA256(seed, purpose) gives the same properties that matter:

- stable: the same seed yields the same passwords on every run (no churn, no drift);
- independent: each purpose label yields an unrelated value, so one leaked password says
  nothing about another or about the seed;
- secret: the computation happens inside `Output.apply` on a secret Output, so results stay
  Pulumi secrets (encrypted in state, masked in output);
- rotatable: set a new seed and `pulumi up` rotates every password at once.

Purpose labels carry a version so a future change of scheme rotates deliberately.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pulumi

_SCHEME = "starling/v1"


def _digest(seed: str, purpose: str) -> bytes:
    return hmac.new(seed.encode(), f"{_SCHEME}/{purpose}".encode(), hashlib.sha256).digest()


def derive_password(seed: pulumi.Output[str], purpose: str) -> pulumi.Output[str]:
    """64 hex characters: safe in URLs, SCRAM, config files and shell without escaping."""
    return pulumi.Output.secret(seed.apply(lambda value: _digest(value, purpose).hex()))


def derive_fernet_key(seed: pulumi.Output[str], purpose: str) -> pulumi.Output[str]:
    """A Fernet key: 32 bytes, URL-safe base64, as Airflow's `[core] fernet_key` expects."""
    return pulumi.Output.secret(
        seed.apply(lambda value: base64.urlsafe_b64encode(_digest(value, purpose)).decode())
    )


class Purposes:
    """The labels in one place, so no two secrets share one by accident."""

    VALKEY = "valkey/requirepass"
    AIRFLOW_FERNET = "airflow/fernet-key"
    AIRFLOW_API_SECRET = "airflow/api-secret-key"
    AIRFLOW_JWT_SECRET = "airflow/jwt-secret"
    AIRFLOW_DATABASE = "airflow/metadata-db"
    # The chart's Redis, Celery's broker (CeleryExecutor only).
    AIRFLOW_BROKER = "airflow/celery-broker"
    # The Airflow UI's one account (SimpleAuthManager), so no install has admin/admin.
    AIRFLOW_UI_ADMIN = "airflow/ui-admin"
    # Not a secret: a marker that changes with the seed, so pods restart on rotation.
    CREDENTIALS_GENERATION = "credentials-generation"
    # The built-in identity service's seed file: its Ed25519 signing keys derive from it
    # (services/starling/identity/contract.py). A purpose of its own, so the identity
    # service never holds the stack seed that every other password derives from.
    IDENTITY_SEED = "identity/signing-seed"

    @staticmethod
    def kafka_user(principal: str) -> str:
        return f"kafka-user/{principal}"
