"""Security contexts that satisfy the Kubernetes "restricted" Pod Security profile.

Our namespaces enforce `restricted`, so a pod that misses one of these fields is rejected at
admission, not discovered later. Everything we run ourselves is built from these two helpers.
"""

from __future__ import annotations

import pulumi_kubernetes as k8s


def restricted_pod_security_context(uid: int) -> k8s.core.v1.PodSecurityContextArgs:
    """Run as the image's unprivileged user; `fsGroup` makes mounted volumes writable for it."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_container_security_context() -> k8s.core.v1.SecurityContextArgs:
    """No privilege escalation, no capabilities, nothing writable but the volumes we mount."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        privileged=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )
