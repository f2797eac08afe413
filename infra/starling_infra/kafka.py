"""The Kafka cluster: node pools, the `Kafka` resource, every topic and every user.

Topics come from the topic catalog and users (with their ACLs) from the access map, both in
`starling`; nothing here names a topic or an operation by hand. The manifest builders are
plain functions so they can be read, and tested, without Pulumi.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from starling.access import PRINCIPALS, Principal, PrincipalKind
from starling.topics import CATALOG, TopicCatalog, TopicSpec
from starling_infra import kafka_metrics, meta
from starling_infra.config import KafkaConfig
from starling_infra.passwords import Purposes, derive_password

KAFKA_COMPONENT = "kafka"
METRICS_CONFIG_MAP = f"{meta.KAFKA_CLUSTER}-kafka-metrics"
# Only pods that declare themselves part of Starling may open a client connection, in our
# namespace; the Airflow namespace as a whole (its chart's pods carry the chart's labels).
CLIENT_POD_LABELS = {"app.kubernetes.io/part-of": meta.PART_OF}
READY_TIMEOUT_SECONDS = "1200"


def user_name(principal: Principal) -> str:
    """The KafkaUser, its SCRAM username and the Secret the User Operator writes."""
    return f"starling-{principal.name}"


def password_secret_name(principal: Principal) -> str:
    """The Secret we create to hand Strimzi the password we derived."""
    return f"{user_name(principal)}-password"


def deployed_principals(settings: KafkaConfig) -> tuple[Principal, ...]:
    return tuple(
        p for p in PRINCIPALS if p.kind is not PrincipalKind.DEV_TOOL or settings.dev_tools
    )


def catalog_for(settings: KafkaConfig) -> TopicCatalog:
    """The catalog as this cluster holds it, replicated as `settings.replication` says."""
    return CATALOG.for_cluster(settings.brokers, settings.replication)


def _wait_annotations(settings: KafkaConfig) -> dict[str, str]:
    if not settings.wait_for_ready:
        return {}
    return {
        "pulumi.com/waitFor": "condition=Ready",
        "pulumi.com/timeoutSeconds": READY_TIMEOUT_SECONDS,
    }


def _storage(settings: KafkaConfig, size: str, storage_class: str | None) -> dict[str, Any]:
    # JBOD with one volume that also holds the KRaft metadata log: the layout Strimzi
    # recommends, and the one that lets a second data volume be added later without a move.
    volume: dict[str, Any] = {"id": 0, "kraftMetadata": "shared"}
    if settings.storage_type == "ephemeral":
        volume |= {"type": "ephemeral", "sizeLimit": size}
    else:
        volume |= {"type": "persistent-claim", "size": size, "deleteClaim": False}
        if storage_class:
            volume["class"] = storage_class
    return {"type": "jbod", "volumes": [volume]}


def broker_storage(settings: KafkaConfig) -> dict[str, Any]:
    return _storage(settings, settings.storage_size, settings.storage_class)


def controller_storage(settings: KafkaConfig) -> dict[str, Any]:
    """Dedicated controllers hold only the KRaft metadata log: a few GiB, not a broker's disk."""
    return _storage(
        settings,
        settings.controller_storage_size,
        settings.controller_storage_class or settings.storage_class,
    )


def _resources(memory: str, cpu: str) -> dict[str, Any]:
    # Memory limit = request: Strimzi sizes the JVM heap from the limit, and a broker that
    # is OOM-killed under pressure is worse than one that is never scheduled.
    return {"requests": {"memory": memory, "cpu": cpu}, "limits": {"memory": memory}}


def node_pool_specs(settings: KafkaConfig) -> dict[str, dict[str, Any]]:
    """Pool name -> KafkaNodePool spec. One dual-role pool, or controllers + brokers."""
    storage = broker_storage(settings)
    broker_resources = _resources(settings.broker_memory, settings.broker_cpu)
    if settings.dual_role:
        return {
            "dual-role": {
                "replicas": settings.brokers,
                "roles": ["controller", "broker"],
                "storage": storage,
                "resources": broker_resources,
            }
        }
    return {
        "controller": {
            "replicas": settings.controllers,
            "roles": ["controller"],
            "storage": controller_storage(settings),
            "resources": _resources(settings.controller_memory, settings.controller_cpu),
        },
        "broker": {
            "replicas": settings.brokers,
            "roles": ["broker"],
            "storage": storage,
            "resources": broker_resources,
        },
    }


def broker_config(settings: KafkaConfig) -> dict[str, Any]:
    replication = settings.replication
    rf, min_isr = replication.factor, replication.min_insync
    config: dict[str, Any] = {
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "num.partitions": settings.default_partitions,
        # Topics exist because the catalog says so (KafkaTopic), never because a client typo'd.
        "auto.create.topics.enable": False,
        # Never elect an out-of-sync replica: losing acknowledged writes is not an option.
        "unclean.leader.election.enable": False,
    }
    if settings.rack_topology_key:
        # Consumers may then fetch from a replica in their own zone.
        config["replica.selector.class"] = (
            "org.apache.kafka.common.replica.RackAwareReplicaSelector"
        )
    return config


def tls_listener() -> dict[str, Any]:
    return {
        "name": "tls",
        "port": meta.KAFKA_TLS_PORT,
        "type": "internal",
        "tls": True,
        "authentication": {"type": "scram-sha-512"},
        # Without peers, Strimzi's generated NetworkPolicy admits every pod in the cluster.
        "networkPolicyPeers": [
            {"podSelector": {"matchLabels": CLIENT_POD_LABELS}},
            # Only Airflow's pods that run tasks or triggers (scheduler, workers, triggerer):
            # both selectors in one peer, so a pod must be in Airflow's namespace *and* be
            # one of those; the api-server, dag-processor and Airflow's database cannot.
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": meta.AIRFLOW_NAMESPACE}
                },
                "podSelector": {
                    "matchLabels": dict(meta.AIRFLOW_POD_LABELS),
                    "matchExpressions": [
                        {
                            "key": "component",
                            "operator": "In",
                            "values": list(meta.AIRFLOW_TASK_COMPONENTS),
                        }
                    ],
                },
            },
        ],
    }


def kafka_spec(settings: KafkaConfig) -> dict[str, Any]:
    kafka: dict[str, Any] = {
        "version": meta.KAFKA_VERSION,
        "metadataVersion": meta.KAFKA_METADATA_VERSION,
        # Secure by default: TLS + SCRAM only, no plaintext listener in any stack.
        "listeners": [tls_listener()],
        "authorization": {"type": "simple", "superUsers": list(settings.super_users)},
        "config": broker_config(settings),
        "metricsConfig": {
            "type": "jmxPrometheusExporter",
            "valueFrom": {
                "configMapKeyRef": {"name": METRICS_CONFIG_MAP, "key": kafka_metrics.CONFIG_KEY}
            },
        },
    }
    if settings.rack_topology_key:
        kafka["rack"] = {"type": "topology-label", "topologyKey": settings.rack_topology_key}
    operator_resources = {
        "requests": {"cpu": "50m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }
    return {
        "kafka": kafka,
        "entityOperator": {
            "topicOperator": {"resources": operator_resources},
            "userOperator": {"resources": operator_resources},
        },
    }


def topic_spec(topic: TopicSpec) -> dict[str, Any]:
    return {
        # Explicit, so the Kafka name never depends on how the resource happens to be named.
        "topicName": topic.name,
        "partitions": topic.partitions,
        "replicas": topic.replicas,
        "config": topic.kafka_config(),
    }


def acls(principal: Principal, catalog: TopicCatalog) -> list[dict[str, Any]]:
    """The access map's rules for `principal`, one to one, in Strimzi's v1 shape."""
    return [
        {
            "resource": {
                "type": rule.resource_type,
                "name": rule.resource_name,
                "patternType": rule.pattern.value,
            },
            "operations": [operation.value for operation in rule.operations],
        }
        for rule in principal.acl_rules(catalog)
    ]


def user_spec(principal: Principal, catalog: TopicCatalog) -> dict[str, Any]:
    return {
        "authentication": {
            "type": "scram-sha-512",
            "password": {
                "valueFrom": {
                    "secretKeyRef": {"name": password_secret_name(principal), "key": "password"}
                }
            },
        },
        "authorization": {"type": "simple", "acls": acls(principal, catalog)},
    }


@dataclass(frozen=True)
class KafkaClusterArgs:
    settings: KafkaConfig
    namespace: pulumi.Input[str]
    secret_seed: pulumi.Output[str]
    # The operator release and/or the CRDs: every Strimzi resource waits for them.
    strimzi_ready: Sequence[pulumi.Resource]


class KafkaCluster(pulumi.ComponentResource):
    kafka: k8s.apiextensions.CustomResource
    node_pools: dict[str, k8s.apiextensions.CustomResource]
    topics: dict[str, k8s.apiextensions.CustomResource]
    users: dict[str, k8s.apiextensions.CustomResource]
    passwords: dict[str, pulumi.Output[str]]
    bootstrap_servers: pulumi.Output[str]
    cluster_name: str

    def __init__(
        self, name: str, args: KafkaClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("starling:kafka:KafkaCluster", name, None, opts)
        settings = args.settings
        self.cluster_name = meta.KAFKA_CLUSTER
        self._namespace = args.namespace
        self._strimzi_ready = list(args.strimzi_ready)
        cluster_label = {"strimzi.io/cluster": meta.KAFKA_CLUSTER}

        metrics = k8s.core.v1.ConfigMap(
            f"{name}-metrics",
            metadata=self._metadata(METRICS_CONFIG_MAP, "metrics"),
            data={kafka_metrics.CONFIG_KEY: kafka_metrics.exporter_config()},
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.node_pools = {
            pool: self._custom_resource(
                f"{name}-pool-{pool}",
                "KafkaNodePool",
                self._metadata(pool, "node-pool", extra_labels=cluster_label),
                spec,
            )
            for pool, spec in node_pool_specs(settings).items()
        }

        self.kafka = self._custom_resource(
            f"{name}-cluster",
            "Kafka",
            self._metadata(meta.KAFKA_CLUSTER, "broker", annotations=_wait_annotations(settings)),
            kafka_spec(settings),
            depends_on=[metrics],
        )

        # Every topic takes the replication the Kafka resource's defaults use: one value.
        catalog = catalog_for(settings)
        self.topics = {
            topic.name: self._custom_resource(
                f"{name}-topic-{topic.name}",
                "KafkaTopic",
                self._metadata(
                    topic.name,
                    "topic",
                    extra_labels=cluster_label,
                    annotations=_wait_annotations(settings),
                ),
                topic_spec(topic),
            )
            for topic in catalog.all_topics()
        }

        self.users = {}
        self.passwords = {}
        for principal in deployed_principals(settings):
            password = derive_password(args.secret_seed, Purposes.kafka_user(principal.name))
            secret = k8s.core.v1.Secret(
                f"{name}-user-{principal.name}-password",
                metadata=self._metadata(password_secret_name(principal), "kafka-user"),
                type="Opaque",
                string_data={"password": password},
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.passwords[principal.name] = password
            self.users[principal.name] = self._custom_resource(
                f"{name}-user-{principal.name}",
                "KafkaUser",
                self._metadata(
                    user_name(principal),
                    "kafka-user",
                    extra_labels=cluster_label,
                    annotations=_wait_annotations(settings),
                ),
                user_spec(principal, catalog),
                depends_on=[secret],
            )

        self.bootstrap_servers = pulumi.Output.from_input(meta.KAFKA_BOOTSTRAP)
        self.register_outputs(
            {
                "bootstrapServers": self.bootstrap_servers,
                "cluster": self.cluster_name,
                "topics": sorted(self.topics),
                "users": sorted(user_name(p) for p in deployed_principals(settings)),
            }
        )

    def _metadata(
        self,
        resource_name: str,
        component: str,
        extra_labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(
            name=resource_name,
            namespace=self._namespace,
            labels={**meta.labels(meta.KAFKA_CLUSTER, component), **(extra_labels or {})},
            annotations=annotations or None,
        )

    def _custom_resource(
        self,
        resource_name: str,
        kind: str,
        metadata: k8s.meta.v1.ObjectMetaArgs,
        spec: dict[str, Any],
        depends_on: list[pulumi.Resource] | None = None,
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=meta.STRIMZI_API_VERSION,
            kind=kind,
            metadata=metadata,
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*self._strimzi_ready, *(depends_on or [])]
            ),
        )
