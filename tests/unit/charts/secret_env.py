"""What counts as a secret in a container's environment (shared by the chart's and the
program's render tests): any `valueFrom.secretKeyRef`, any `envFrom.secretRef`, and any
literal value under a name that says it is a secret, unless the name is a `*_FILE` or the
value is a path (the convention: env carries where the secret is, never the secret)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
# Names that match SECRET_NAME but hold no secret, each with the reason.
NOT_SECRETS = {
    # Key *ids* ("k1,k2"): which derived key signs; the key material comes from the seed file.
    "STARLING_IDENTITY_SIGNING_KEYS",
    # A token lifetime in seconds.
    "STARLING_IDENTITY_TOKEN_TTL_S",
}


def pod_specs(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod spec(s) of a workload object, wherever the kind keeps it."""
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "Pod":
        yield spec
    elif manifest.get("kind") == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif isinstance(spec.get("template"), dict):
        yield spec["template"].get("spec") or {}


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def _looks_like_a_path(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/")


def secret_env_findings(manifest: dict[str, Any]) -> list[str]:
    """One line per secret found in an env entry of `manifest`'s containers."""
    where = f"{manifest.get('kind')}/{(manifest.get('metadata') or {}).get('name')}"
    findings = []
    for pod in pod_specs(manifest):
        for container in _containers(pod):
            prefix = f"{where} container {container.get('name')}"
            for source in container.get("envFrom") or []:
                if "secretRef" in source:
                    findings.append(f"{prefix}: envFrom secretRef {source['secretRef']}")
            for entry in container.get("env") or []:
                name = str(entry.get("name", ""))
                value_from = entry.get("valueFrom") or {}
                if "secretKeyRef" in value_from:
                    findings.append(f"{prefix}: {name} from secretKeyRef")
                elif (
                    SECRET_NAME.search(name)
                    and name not in NOT_SECRETS
                    and not name.upper().endswith("_FILE")
                    and "value" in entry
                    and entry["value"] not in ("", None)
                    and not _looks_like_a_path(entry["value"])
                ):
                    findings.append(f"{prefix}: {name} has a literal value")
    return findings
