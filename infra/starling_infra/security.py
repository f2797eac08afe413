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


def single_pod_stateful_set_spec(
    *,
    service_name: str,
    selector: dict[str, str],
    labels: dict[str, str],
    uid: int,
    container: k8s.core.v1.ContainerArgs,
    volumes: list[k8s.core.v1.VolumeArgs],
    volume_claim_templates: list[k8s.core.v1.PersistentVolumeClaimArgs] | None,
) -> k8s.apps.v1.StatefulSetSpecArgs:
    """One restricted pod with a stable identity (our store and Airflow's database): no
    service-account token and no service-link env, the pod context from
    `restricted_pod_security_context`."""
    return k8s.apps.v1.StatefulSetSpecArgs(
        replicas=1,
        service_name=service_name,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        volume_claim_templates=volume_claim_templates,
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
            spec=k8s.core.v1.PodSpecArgs(
                automount_service_account_token=False,
                enable_service_links=False,
                security_context=restricted_pod_security_context(uid),
                containers=[container],
                volumes=volumes,
            ),
        ),
    )
