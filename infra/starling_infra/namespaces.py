"""The three namespaces, each enforcing the "restricted" Pod Security Standard."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from starling_infra import meta

# enforce rejects a non-compliant pod; audit and warn make violations visible in the audit log
# and in `kubectl apply` output before someone relaxes enforce.
RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}


@dataclass(frozen=True)
class NamespacesArgs:
    # The operator namespace exists only when we install the operator.
    include_operator: bool = True


class Namespaces(pulumi.ComponentResource):
    """`starling` (Kafka, store, services), `starling-airflow` and `strimzi` (the operator)."""

    starling: k8s.core.v1.Namespace
    airflow: k8s.core.v1.Namespace
    operator: k8s.core.v1.Namespace | None

    def __init__(
        self, name: str, args: NamespacesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:namespaces:Namespaces", name, None, opts)
        self.starling = self._namespace(f"{name}-starling", meta.NAMESPACE, "platform")
        self.airflow = self._namespace(f"{name}-airflow", meta.AIRFLOW_NAMESPACE, "workflows")
        self.operator = (
            self._namespace(f"{name}-operator", meta.OPERATOR_NAMESPACE, "operator")
            if args.include_operator
            else None
        )
        self.register_outputs(
            {
                "starling": self.starling.metadata.name,
                "airflow": self.airflow.metadata.name,
            }
        )

    def all(self) -> list[pulumi.Resource]:
        return [ns for ns in (self.starling, self.airflow, self.operator) if ns is not None]

    def _namespace(
        self, resource_name: str, namespace: str, component: str
    ) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            resource_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=namespace,
                labels={**meta.labels(namespace, component), **RESTRICTED},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
