"""The control plane itself: version, CRDs, admission of bad custom resources, and the two
controllers the Pulumi tests rely on (namespace deletion and garbage collection)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from starling.harness.controlplane import ControlPlane, KubeApi, KubeApiError, wait_for
from starling.toolchain.catalog import KUBERNETES_VERSION

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(3600)]

STRIMZI = "/apis/kafka.strimzi.io/v1"


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[KubeApi]:
    with control_plane.api() as client:
        yield client


@pytest.fixture
def namespace(api: KubeApi, control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace (with the Strimzi CRDs present: an earlier `pulumi destroy` may
    have removed the ones the fixture installed), deleted afterwards."""
    from starling.harness.controlplane import default_strimzi_crds_dir

    control_plane.install_crds(default_strimzi_crds_dir())
    name = f"cp-test-{secrets.token_hex(4)}"
    api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    api.delete(f"/api/v1/namespaces/{name}")


def test_api_server_reports_the_pinned_version(api: KubeApi) -> None:
    version = api.get("/version")
    assert version["gitVersion"] == KUBERNETES_VERSION
    major, minor, _ = KUBERNETES_VERSION.removeprefix("v").split(".")
    assert (version["major"], version["minor"]) == (major, minor)


def test_strimzi_crds_are_established(control_plane: ControlPlane, api: KubeApi) -> None:
    from starling.harness.controlplane import default_strimzi_crds_dir

    control_plane.install_crds(default_strimzi_crds_dir())
    names = {
        crd["metadata"]["name"]
        for crd in api.list("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    }
    assert {
        "kafkas.kafka.strimzi.io",
        "kafkanodepools.kafka.strimzi.io",
        "kafkatopics.kafka.strimzi.io",
        "kafkausers.kafka.strimzi.io",
    } <= names


def _rejection(api: KubeApi, path: str, body: dict[str, Any]) -> KubeApiError:
    with pytest.raises(KubeApiError) as rejected:
        api.create(path, body)
    return rejected.value


def test_topic_with_non_integer_partitions_is_rejected_by_the_crd_schema(
    api: KubeApi, namespace: str
) -> None:
    error = _rejection(
        api,
        f"{STRIMZI}/namespaces/{namespace}/kafkatopics",
        {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaTopic",
            "metadata": {"name": "bad-partitions", "labels": {"strimzi.io/cluster": "starling"}},
            "spec": {"partitions": "x", "replicas": 1},
        },
    )
    assert error.status == 422
    # The API server's own wording, as `kubectl apply` or Pulumi would surface it.
    assert "spec.partitions" in error.reason
    assert 'must be of type integer: "string"' in error.reason


def test_user_with_unknown_authentication_type_is_rejected_by_the_crd_schema(
    api: KubeApi, namespace: str
) -> None:
    error = _rejection(
        api,
        f"{STRIMZI}/namespaces/{namespace}/kafkausers",
        {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaUser",
            "metadata": {"name": "bad-auth", "labels": {"strimzi.io/cluster": "starling"}},
            "spec": {"authentication": {"type": "plain"}},
        },
    )
    assert error.status == 422
    assert "spec.authentication.type" in error.reason
    assert 'Unsupported value: "plain"' in error.reason
    assert '"scram-sha-512"' in error.reason  # the message lists what is allowed


def test_namespace_deletion_completes(api: KubeApi) -> None:
    # Finalizing a namespace (deleting what is in it, then the `kubernetes` finalizer) is
    # the controller manager's namespace controller: without it, this hangs in Terminating.
    name = f"cp-ns-{secrets.token_hex(4)}"
    api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    api.create(
        f"/api/v1/namespaces/{name}/configmaps",
        {"metadata": {"name": "leftover"}, "data": {"k": "v"}},
    )
    api.delete(f"/api/v1/namespaces/{name}")
    wait_for(
        lambda: api.get_or_none(f"/api/v1/namespaces/{name}") is None,
        timeout=120,
        what=f"namespace {name} to be finalized",
    )


def test_garbage_collector_deletes_dependents(api: KubeApi, namespace: str) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = api.create(configmaps, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    api.create(configmaps, {"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    api.delete(f"{configmaps}/owner")
    wait_for(
        lambda: api.get_or_none(f"{configmaps}/dependent") is None,
        timeout=120,
        what="the garbage collector to delete the dependent ConfigMap",
    )
