"""A checker for the Kubernetes Pod Security Standards "restricted" profile (v1.30+).

Pure functions over manifest dicts, so any test can check anything that carries a pod
template: chart renders, Pulumi mock inputs, static manifests. Each violation is one
readable sentence naming the container and field, in the spirit of the admission
controller's own messages. The baseline checks are included: restricted builds on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Kinds whose pod template sits at a known path.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Keys of a volume entry that are not its source type.
_VOLUME_META_KEYS = frozenset({"name"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
ALLOWED_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})
# The one capability restricted lets a container add back after dropping ALL.
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def is_workload(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("kind") in _TEMPLATE_PATHS


def pod_spec_of(manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec inside a Pod or workload manifest; None for other kinds."""
    path = _TEMPLATE_PATHS.get(str(manifest.get("kind")))
    if path is None:
        return None
    node: Any = manifest
    for key in path:
        if not isinstance(node, Mapping):
            return {}
        node = node.get(key, {})
    return node if isinstance(node, Mapping) else {}


def restricted_violations(manifest: Mapping[str, Any]) -> list[str]:
    """Every way a Pod or workload manifest falls short of the restricted profile."""
    spec = pod_spec_of(manifest)
    if spec is None:
        return []
    where = f"{manifest.get('kind')}/{_mapping(manifest.get('metadata')).get('name', '?')}"
    return [f"{where}: {problem}" for problem in pod_spec_violations(spec)]


def pod_spec_violations(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    pod_context = _mapping(spec.get("securityContext"))
    problems += _host_namespace_violations(spec)
    problems += _volume_violations(spec)
    problems += _sysctl_violations(pod_context)
    problems += _common_context_violations("pod", pod_context)

    pod_non_root = pod_context.get("runAsNonRoot") is True
    pod_seccomp = _mapping(pod_context.get("seccompProfile")).get("type")
    for label, container in _containers(spec):
        context = _mapping(container.get("securityContext"))
        problems += _common_context_violations(label, context)
        if context.get("privileged") is True:
            problems.append(f"{label}: securityContext.privileged must not be true")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{label}: securityContext.allowPrivilegeEscalation must be false")
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            problems.append(
                f"{label}: runAsNonRoot must be true (in the container or pod securityContext)"
            )
        seccomp = _mapping(context.get("seccompProfile")).get("type")
        if seccomp is None and pod_seccomp is None:
            problems.append(
                f"{label}: seccompProfile.type must be RuntimeDefault or Localhost "
                "(in the container or pod securityContext)"
            )
        capabilities = _mapping(context.get("capabilities"))
        if "ALL" not in _strings(capabilities.get("drop")):
            problems.append(f"{label}: securityContext.capabilities.drop must include ALL")
        added = set(_strings(capabilities.get("add"))) - ADDABLE_CAPABILITIES
        if added:
            problems.append(
                f"{label}: securityContext.capabilities.add may only hold NET_BIND_SERVICE, "
                f"not {sorted(added)}"
            )
        for port in _sequence(container.get("ports")):
            host_port = _mapping(port).get("hostPort")
            if host_port not in (None, 0):
                problems.append(f"{label}: hostPort {host_port} is not allowed")
    return problems


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in _sequence(spec.get(field)):
            entry = _mapping(container)
            yield f"{field}[{entry.get('name', '?')}]", entry


def _host_namespace_violations(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"pod: spec.{field} must not be true"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field) is True
    ]


def _volume_violations(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    for volume in _sequence(spec.get("volumes")):
        entry = _mapping(volume)
        kinds = set(entry) - _VOLUME_META_KEYS
        bad = kinds - RESTRICTED_VOLUME_TYPES
        if bad:
            problems.append(
                f"pod: volume {entry.get('name', '?')!r} uses {sorted(bad)}; restricted allows "
                f"only {sorted(RESTRICTED_VOLUME_TYPES)}"
            )
    return problems


def _sysctl_violations(pod_context: Mapping[str, Any]) -> list[str]:
    return [
        f"pod: sysctl {name!r} is not in the safe set"
        for name in (_mapping(s).get("name") for s in _sequence(pod_context.get("sysctls")))
        if name not in SAFE_SYSCTLS
    ]


def _common_context_violations(label: str, context: Mapping[str, Any]) -> list[str]:
    """Rules that apply alike to the pod-level and each container's securityContext."""
    problems = []
    if context.get("runAsUser") == 0:
        problems.append(f"{label}: runAsUser must not be 0")
    if _mapping(context.get("windowsOptions")).get("hostProcess") is True:
        problems.append(f"{label}: windowsOptions.hostProcess must not be true")
    seccomp = _mapping(context.get("seccompProfile")).get("type")
    if seccomp is not None and seccomp not in ALLOWED_PROFILE_TYPES:
        problems.append(f"{label}: seccompProfile.type {seccomp!r} is not allowed")
    apparmor = _mapping(context.get("appArmorProfile")).get("type")
    if apparmor is not None and apparmor not in ALLOWED_PROFILE_TYPES:
        problems.append(f"{label}: appArmorProfile.type {apparmor!r} is not allowed")
    selinux = _mapping(context.get("seLinuxOptions"))
    if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES:
        problems.append(f"{label}: seLinuxOptions.type {selinux.get('type')!r} is not allowed")
    for field in ("user", "role"):
        if selinux.get(field):
            problems.append(f"{label}: seLinuxOptions.{field} must not be set")
    proc_mount = context.get("procMount")
    if proc_mount not in (None, "Default"):
        problems.append(f"{label}: procMount {proc_mount!r} is not allowed")
    return problems


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()


def _strings(value: Any) -> list[str]:
    return [item for item in _sequence(value) if isinstance(item, str)]


def assert_restricted(manifest: Mapping[str, Any]) -> None:
    """Fail with every violation listed, naming the workload."""
    problems = restricted_violations(manifest)
    assert not problems, "violates Pod Security 'restricted':\n  " + "\n  ".join(problems)
