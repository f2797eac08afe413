"""The baseline rules as plain functions over resource properties.

Each rule takes the properties of one resource (the Kubernetes object as Pulumi sends
it: `apiVersion`, `kind`, `metadata`, `spec`, field names as in the Kubernetes API) and
returns human-readable violations, empty when compliant. They take `Mapping`/`Sequence`,
not `dict`/`list`: during a preview the policy runtime hands over read-only proxies that
raise on values not known yet, and the runtime turns that into "not checked yet".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Pulumi type tokens of the Kubernetes kinds that carry a pod, and where the pod spec is.
# Patch resources are left out: a partial object cannot be judged on what it omits.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:core/v1:ReplicationController": ("spec", "template", "spec"),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Stacks where a plaintext or unauthenticated Kafka listener is acceptable: a laptop
# kind cluster nobody else reaches.
DEV_STACKS = frozenset({"dev"})
REQUIRED_RESOURCES = (
    ("requests", "cpu"),
    ("requests", "memory"),
    ("limits", "cpu"),
    ("limits", "memory"),
)


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload resource; None for resources that run no pods."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    node: Any = props
    for key in path:
        node = _mapping(node).get(key)
    return _mapping(node)


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(label, container) for init, regular and ephemeral containers alike."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for entry in _sequence(spec.get(field)):
            container = _mapping(entry)
            yield f"container {container.get('name', '?')!r} ({field})", container


def privileged_containers(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{label} runs privileged (securityContext.privileged: true)"
        for label, container in containers(spec)
        if _mapping(container.get("securityContext")).get("privileged") is True
    ]


def root_containers(spec: Mapping[str, Any]) -> list[str]:
    """runAsNonRoot must end up true for every container, and no UID may be 0.

    A container's own setting overrides the pod's, so `false` there undoes a pod-level
    `true`; only an explicit `true` proves anything (the image's USER is not visible here).
    """
    pod_context = _mapping(spec.get("securityContext"))
    problems = []
    if pod_context.get("runAsUser") == 0:
        problems.append("pod securityContext.runAsUser is 0 (root)")
    for label, container in containers(spec):
        context = _mapping(container.get("securityContext"))
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(
                f"{label} may run as root: set runAsNonRoot: true on the pod or container"
            )
        if context.get("runAsUser") == 0:
            problems.append(f"{label} securityContext.runAsUser is 0 (root)")
    return problems


def privilege_escalation(spec: Mapping[str, Any]) -> list[str]:
    # Unset means allowed (and always allowed with privileged or CAP_SYS_ADMIN): only an
    # explicit false is compliant.
    return [
        f"{label} does not set securityContext.allowPrivilegeEscalation: false"
        for label, container in containers(spec)
        if _mapping(container.get("securityContext")).get("allowPrivilegeEscalation") is not False
    ]


def missing_resources(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    for label, container in containers(spec):
        if label.endswith("(ephemeralContainers)"):
            continue  # the API forbids resources on ephemeral (debug) containers
        resources = _mapping(container.get("resources"))
        missing = [
            f"{section}.{name}"
            for section, name in REQUIRED_RESOURCES
            if _mapping(resources.get(section)).get(name) in (None, "")
        ]
        if missing:
            problems.append(f"{label} has no resources {', '.join(missing)}")
    return problems


def unpinned_images(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    for label, container in containers(spec):
        image = container.get("image")
        if not isinstance(image, str) or not image:
            problems.append(f"{label} has no image")
            continue
        if "@" in image:
            continue  # pinned by digest: the strongest pin there is
        tag = image_tag(image)
        if tag is None:
            problems.append(f"{label} image {image!r} has no tag (it means :latest)")
        elif tag == "latest":
            problems.append(f"{label} image {image!r} uses the mutable tag 'latest'")
    return problems


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None. A registry port ("host:5000/app") is not a tag."""
    last_segment = image.split("@", 1)[0].rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return None
    return last_segment.rsplit(":", 1)[1]


def is_strimzi_kafka(resource_type: str) -> bool:
    # Any served version of the CRD: v1 today, whatever comes next tomorrow.
    return resource_type.startswith("kubernetes:kafka.strimzi.io/") and resource_type.endswith(
        ":Kafka"
    )


def unauthenticated_kafka_listeners(props: Mapping[str, Any], stack: str) -> list[str]:
    """Listeners of a Strimzi Kafka without `authentication`, unless the stack is dev."""
    if stack in DEV_STACKS:
        return []
    kafka = _mapping(_mapping(props.get("spec")).get("kafka"))
    problems = []
    for entry in _sequence(kafka.get("listeners")):
        listener = _mapping(entry)
        if not _mapping(listener.get("authentication")).get("type"):
            problems.append(
                f"Kafka listener {listener.get('name', '?')!r} (port {listener.get('port', '?')}) "
                f"has no authentication; only the dev stack may run one (stack is {stack!r})"
            )
    return problems


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()
