"""`starling status --kube-context`: what a cluster's Starling deployment is doing, as one table.

It reads, through the API server named by a kubeconfig context: the Kafka cluster and its
node pools (Strimzi's Ready conditions), every KafkaTopic and KafkaUser (Ready), the
Deployments and StatefulSets of our namespaces (ready vs desired replicas) and the Airflow
Helm release (its release Secret). Plain HTTPS with httpx and the kubeconfig's credentials:
the `kubernetes` client is not a dependency, and the calls are a handful of GETs.

The names mirror infra/starling_infra/meta.py (the infra program is not part of the
package); tests/unit/test_status_cluster.py checks they agree.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from starling.harness.status import Row

NAMESPACE = "starling"
AIRFLOW_NAMESPACE = "starling-airflow"
OPERATOR_NAMESPACE = "strimzi"
OUR_NAMESPACES = (NAMESPACE, AIRFLOW_NAMESPACE, OPERATOR_NAMESPACE)
STRIMZI_API = "/apis/kafka.strimzi.io/v1"
AIRFLOW_RELEASE = "starling-airflow"
_TIMEOUT_S = 10.0


class ClusterStatusError(RuntimeError):
    """One line naming the cause and the fix."""


class ClusterForbiddenError(ClusterStatusError):
    """The API server refused the context's credentials (401/403)."""


@dataclass(frozen=True)
class ClusterAccess:
    """What a kubeconfig context says about reaching its API server."""

    context: str
    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    token: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None


def default_kubeconfig() -> Path:
    # $KUBECONFIG may list several files; the first is where kubectl writes, and the
    # usual one to name a context in.
    listed = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(listed).expanduser() if listed else Path.home() / ".kube" / "config"


def load_access(kubeconfig: Path, context: str) -> ClusterAccess:
    try:
        import yaml
    except ImportError as error:  # the services image ships without PyYAML
        raise ClusterStatusError(
            "reading a kubeconfig needs PyYAML; run `starling status` from the project"
            " environment (`uv sync`, then `uv run starling status ...`)"
        ) from error
    try:
        document = yaml.safe_load(kubeconfig.read_text())
    except OSError as error:
        raise ClusterStatusError(
            f"cannot read kubeconfig {kubeconfig}: {error.strerror}; pass --kubeconfig <path>"
        ) from error
    except yaml.YAMLError as error:
        raise ClusterStatusError(f"kubeconfig {kubeconfig} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ClusterStatusError(f"kubeconfig {kubeconfig} holds no configuration")
    contexts = _named(document, "contexts", "context")
    if context not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise ClusterStatusError(
            f"context {context!r} is not in kubeconfig {kubeconfig} (it has: {known});"
            " pass one of those to --kube-context, or --kubeconfig <path>"
        )
    cluster_name = contexts[context].get("cluster", "")
    cluster = _named(document, "clusters", "cluster").get(cluster_name)
    if cluster is None or not cluster.get("server"):
        raise ClusterStatusError(
            f"context {context!r} names cluster {cluster_name!r}, which has no server in"
            f" kubeconfig {kubeconfig}; fix the kubeconfig"
        )
    user = _named(document, "users", "user").get(contexts[context].get("user", ""), {})
    base = kubeconfig.parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _read(base, user["tokenFile"]).decode().strip()
    if user.get("exec") or user.get("auth-provider"):
        raise ClusterStatusError(
            f"context {context!r} authenticates through an exec/auth-provider plugin, which"
            " `starling status` does not run; use a context with a token or client certificate"
        )
    return ClusterAccess(
        context=context,
        server=str(cluster["server"]).rstrip("/"),
        ca_pem=_data_or_file(base, cluster, "certificate-authority"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=token or None,
        client_cert_pem=_data_or_file(base, user, "client-certificate"),
        client_key_pem=_data_or_file(base, user, "client-key"),
    )


def _named(document: dict[str, Any], section: str, key: str) -> dict[str, dict[str, Any]]:
    return {
        str(entry.get("name")): entry.get(key) or {}
        for entry in document.get(section) or []
        if isinstance(entry, dict)
    }


def _read(base: Path, name: str) -> bytes:
    path = Path(name).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        return path.read_bytes()
    except OSError as error:
        raise ClusterStatusError(
            f"kubeconfig refers to {path}, which cannot be read: {error.strerror}"
        ) from error


def _data_or_file(base: Path, section: dict[str, Any], key: str) -> bytes | None:
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return _read(base, section[key])
    return None


class ClusterReader:
    """GETs against the API server with the context's credentials."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access
        self._scratch = tempfile.TemporaryDirectory(prefix="starling-status-")
        verify: ssl.SSLContext | bool
        if access.insecure:
            verify = False
        else:
            verify = ssl.create_default_context()
            if access.ca_pem:
                verify.load_verify_locations(cadata=access.ca_pem.decode())
            if access.client_cert_pem and access.client_key_pem:
                # ssl reads a certificate chain only from files; they live in a private
                # temporary directory for the lifetime of this reader.
                cert = Path(self._scratch.name) / "client.crt"
                key = Path(self._scratch.name) / "client.key"
                cert.write_bytes(access.client_cert_pem)
                key.write_bytes(access.client_key_pem)
                verify.load_cert_chain(cert, key)
        headers = {"Accept": "application/json"}
        if access.token:
            headers["Authorization"] = f"Bearer {access.token}"
        self._client = httpx.Client(
            base_url=access.server, verify=verify, headers=headers, timeout=_TIMEOUT_S
        )

    def close(self) -> None:
        self._client.close()
        self._scratch.cleanup()

    def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]] | None:
        """The items, or None when the resource type does not exist (a CRD not installed)."""
        params = {"labelSelector": label_selector} if label_selector else None
        try:
            response = self._client.get(path, params=params)
        except httpx.TransportError as error:
            raise ClusterStatusError(
                f"API server {self.access.server} (context {self.access.context!r}) is"
                f" unreachable: {error or type(error).__name__}; check the cluster runs and"
                " the context is the right one"
            ) from error
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise ClusterForbiddenError(
                f"API server {self.access.server} refused context {self.access.context!r}"
                f" ({response.status_code} on GET {path}); the context's credentials need"
                " read access to our namespaces and the Strimzi resources"
            )
        if response.status_code >= 400:
            raise ClusterStatusError(
                f"GET {path} on {self.access.server} answered {response.status_code}:"
                f" {response.text[:200]}"
            )
        items = response.json().get("items") or []
        return sorted(items, key=lambda item: str(item["metadata"]["name"]))


def collect_cluster(access: ClusterAccess) -> list[Row]:
    reader = ClusterReader(access)
    try:
        rows = [Row("cluster", f"{access.server} (context {access.context})", None)]
        rows += _strimzi_rows(reader)
        for namespace in OUR_NAMESPACES:
            rows += _workload_rows(reader, namespace)
        rows += _airflow_release_rows(reader)
        return rows
    finally:
        reader.close()


def _ready(resource: dict[str, Any]) -> tuple[bool, str]:
    """Strimzi's Ready condition as (ready, what to show)."""
    conditions = (resource.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return True, "Ready"
            why = condition.get("message") or condition.get("reason") or "no reason given"
            return False, f"not Ready: {why}"
    # Only the operator writes conditions: none means it never reconciled the resource.
    return False, "no Ready condition yet (has the Strimzi operator reconciled it?)"


def _strimzi_rows(reader: ClusterReader) -> list[Row]:
    base = f"{STRIMZI_API}/namespaces/{NAMESPACE}"
    kafkas = reader.list(f"{base}/kafkas")
    if kafkas is None:
        return [Row("kafka", "the Strimzi CRDs are not installed in this cluster", False)]
    rows: list[Row] = []
    if not kafkas:
        rows.append(Row("kafka", f"no Kafka resource in namespace {NAMESPACE}", False))
    for kafka in kafkas:
        ready, detail = _ready(kafka)
        rows.append(Row(f"kafka {kafka['metadata']['name']}", detail, ready))
    for pool in reader.list(f"{base}/kafkanodepools") or []:
        ready, detail = _ready(pool)
        desired = (pool.get("spec") or {}).get("replicas", 0)
        status = pool.get("status") or {}
        if not any(c.get("type") == "Ready" for c in status.get("conditions") or []):
            # Strimzi may report a node pool only through its node ids, without a Ready
            # condition: every desired node assigned counts as ready.
            nodes = len(status.get("nodeIds") or [])
            ready = bool(status) and nodes == desired
            detail = f"{nodes}/{desired} node(s) assigned" + ("" if status else "; no status yet")
        rows.append(Row(f"nodepool {pool['metadata']['name']}", detail, ready))
    for plural, label in (("kafkatopics", "topic"), ("kafkausers", "user")):
        for item in reader.list(f"{base}/{plural}") or []:
            ready, detail = _ready(item)
            name = item["metadata"]["name"]
            topic_name = (item.get("spec") or {}).get("topicName")
            if topic_name and topic_name != name:
                detail = f"{topic_name}: {detail}"
            rows.append(Row(f"{label} {name}", detail, ready))
    return rows


def _workload_rows(reader: ClusterReader, namespace: str) -> list[Row]:
    rows: list[Row] = []
    for plural, kind in (("deployments", "deployment"), ("statefulsets", "statefulset")):
        for item in reader.list(f"/apis/apps/v1/namespaces/{namespace}/{plural}") or []:
            desired = (item.get("spec") or {}).get("replicas", 1)
            ready = (item.get("status") or {}).get("readyReplicas", 0)
            rows.append(
                Row(
                    f"{kind} {namespace}/{item['metadata']['name']}",
                    f"{ready}/{desired} replica(s) ready",
                    ready >= desired,
                )
            )
    return rows


def _airflow_release_rows(reader: ClusterReader) -> list[Row]:
    # Helm 3 keeps each release revision in a Secret labelled owner=helm,name=<release>.
    try:
        secrets = reader.list(
            f"/api/v1/namespaces/{AIRFLOW_NAMESPACE}/secrets",
            label_selector=f"owner=helm,name={AIRFLOW_RELEASE}",
        )
    except ClusterForbiddenError:
        # Reading Secrets is often withheld from read-only contexts; the rest still counts.
        return [
            Row(
                "airflow release",
                f"unknown: this context may not list Secrets in {AIRFLOW_NAMESPACE}",
                None,
            )
        ]
    if not secrets:
        return [Row("airflow release", f"{AIRFLOW_RELEASE} is not installed", None)]
    latest = max(secrets, key=lambda s: int(s["metadata"].get("labels", {}).get("version", 0)))
    labels = latest["metadata"].get("labels", {})
    state = labels.get("status", "unknown")
    return [
        Row(
            "airflow release",
            f"{AIRFLOW_RELEASE} revision {labels.get('version', '?')}: {state}",
            state == "deployed",
        )
    ]
