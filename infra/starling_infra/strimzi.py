"""The Strimzi Cluster Operator and its CRDs.

Two ways in, chosen by config:

- `crdsFrom: chart` (default): the pinned operator chart installs the operator and, from its
  `crds/` folder, the CRDs. Helm never upgrades CRDs, which is fine while the pin is fixed.
- `crdsFrom: directory`: Pulumi applies the CRD YAMLs itself (and tells Helm to skip its
  copy). This is the hook for an API-server-only CI cluster, which sets
  `installOperator: false` and applies `../shared/strimzi-crds/1.2.0` so the Kafka custom
  resources are admitted and validated without anything reconciling them.

Either way `ready` lists what every Strimzi custom resource must depend on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml

from starling_infra import meta

# Pod Security "restricted" for everything the operator creates (brokers, controllers, entity
# operator): Strimzi's default provider only meets "baseline", which our namespace rejects.
POD_SECURITY_PROVIDER_ENV = {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"}


@dataclass(frozen=True)
class StrimziOperatorArgs:
    install_operator: bool
    crds_from: Literal["chart", "directory"]
    crds_directory: Path
    operator_namespace: pulumi.Input[str]
    watch_namespace: pulumi.Input[str]
    depends_on: tuple[pulumi.Resource, ...] = field(default_factory=tuple)


def operator_values(watch_namespace: pulumi.Input[str]) -> dict[str, object]:
    """Values of the operator chart (keys from its values.yaml at 1.2.0)."""
    return {
        # Only our namespace: the operator needs no cluster-wide watch rights.
        "watchNamespaces": [watch_namespace],
        "extraEnvs": [POD_SECURITY_PROVIDER_ENV],
        # Every key of the chart's `resources` default, stated: Helm deep-merges values, so a
        # key left out keeps the chart's value (its CPU limit survived a memory-only block).
        # One core bounds the operator's reconcile bursts; scanners expect a CPU limit.
        "resources": {
            "requests": {"cpu": "100m", "memory": "384Mi"},
            "limits": {"cpu": "1", "memory": "384Mi"},
        },
    }


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """The CRDs as the API server will store them.

    Strimzi 1.2.0's Kafka CRD declares `status.clusterSecurity` with `properties: {}`; the
    API server drops the empty map, so applying the file as written makes every later
    preview propose to add it back (found by the controlplane tier). Pruning empty
    `properties` maps here keeps a second `up` a true no-op without changing the schema.
    """
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no Strimzi CRD files (*.yaml) in {directory}")
    return [_without_empty_properties(yaml.safe_load(path.read_text())) for path in paths]


def _without_empty_properties(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_empty_properties(value)
            for key, value in node.items()
            if not (key == "properties" and value == {})
        }
    if isinstance(node, list):
        return [_without_empty_properties(item) for item in node]
    return node


class StrimziOperator(pulumi.ComponentResource):
    release: k8s.helm.v3.Release | None
    crds: k8s.yaml.v2.ConfigGroup | None
    ready: list[pulumi.Resource]

    def __init__(
        self, name: str, args: StrimziOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:strimzi:StrimziOperator", name, None, opts)
        self.crds = None
        self.release = None
        if args.crds_from == "directory":
            self.crds = k8s.yaml.v2.ConfigGroup(
                f"{name}-crds",
                objs=load_crds(args.crds_directory),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            )
        if args.install_operator:
            self.release = k8s.helm.v3.Release(
                f"{name}-operator",
                k8s.helm.v3.ReleaseArgs(
                    name="strimzi-cluster-operator",
                    chart=meta.STRIMZI_CHART,
                    version=meta.STRIMZI_VERSION,
                    namespace=args.operator_namespace,
                    values=operator_values(args.watch_namespace),
                    skip_crds=args.crds_from == "directory",
                    timeout=600,
                ),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[*args.depends_on, *([self.crds] if self.crds else [])],
                ),
            )
        self.ready = [resource for resource in (self.crds, self.release) if resource is not None]
        self.register_outputs(
            {"release": self.release.name if self.release else None, "crdsFrom": args.crds_from}
        )
