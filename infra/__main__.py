"""Starling: `pulumi up` stands up Kafka (Strimzi), the store, Airflow and the services.

Thin on purpose: load the validated stack config once, build one component per concern, and
export what a person needs next. Decisions live in the components (starling_infra/*).
"""

from __future__ import annotations

import pulumi

from starling_infra import meta
from starling_infra.airflow import Airflow, AirflowArgs
from starling_infra.config import load_stack_config
from starling_infra.identity import Identity, IdentityArgs, auth_values
from starling_infra.kafka import KafkaCluster, KafkaClusterArgs
from starling_infra.namespaces import Namespaces, NamespacesArgs
from starling_infra.outputs import health_commands
from starling_infra.services import Services, ServicesArgs
from starling_infra.store import Store, StoreArgs
from starling_infra.strimzi import StrimziOperator, StrimziOperatorArgs

# Fails with a message naming the key before any resource exists.
config = load_stack_config()
seed = config.secret_seed_output()
images = config.images

namespaces = Namespaces(
    "namespaces", NamespacesArgs(include_operator=config.strimzi.install_operator)
)
starling_ns = namespaces.starling.metadata.name

strimzi = StrimziOperator(
    "strimzi",
    StrimziOperatorArgs(
        install_operator=config.strimzi.install_operator,
        crds_from=config.strimzi.crds_from,
        crds_directory=config.strimzi.crds_path,
        operator_namespace=(
            namespaces.operator.metadata.name if namespaces.operator else meta.OPERATOR_NAMESPACE
        ),
        watch_namespace=starling_ns,
        depends_on=tuple(namespaces.all()),
    ),
)

kafka = KafkaCluster(
    "kafka",
    KafkaClusterArgs(
        settings=config.kafka,
        namespace=starling_ns,
        secret_seed=seed,
        strimzi_ready=strimzi.ready,
    ),
)

store = Store(
    "store",
    StoreArgs(
        settings=config.store,
        image=images.valkey,
        pull_policy=images.pull_policy,
        namespace=starling_ns,
        secret_seed=seed,
    ),
)

if config.airflow.enabled:
    airflow = Airflow(
        "airflow",
        AirflowArgs(
            settings=config.airflow,
            image=images.airflow,
            postgres_image=images.postgres,
            pull_policy=images.pull_policy,
            namespace=namespaces.airflow.metadata.name,
            secret_seed=seed,
            kafka_password=kafka.passwords["airflow"],
            kafka=kafka.kafka,
            kafka_namespace=meta.NAMESPACE,
            store_host=store.host,
            store_port=store.port,
            store_password=store.password,
        ),
    )
    pulumi.export("airflowUrl", airflow.url)
    pulumi.export("airflowPortForward", airflow.port_forward)
    pulumi.export("airflowUser", airflow.ui_user)
    pulumi.export("airflowPasswordCommand", airflow.ui_password_command)

if config.services.enabled:
    # The built-in identity service's seed Secret, unless tokens come from elsewhere.
    identity = (
        Identity("identity", IdentityArgs(namespace=starling_ns, secret_seed=seed))
        if config.identity_deployed
        else None
    )
    services = Services(
        "services",
        ServicesArgs(
            settings=config.services,
            image=images.services,
            pull_policy=images.pull_policy,
            namespace=starling_ns,
            store_host=store.host,
            store_password_secret=store.password_secret_name,
            auth=auth_values(config),
            depends_on=[
                kafka.kafka,
                *kafka.users.values(),
                *kafka.topics.values(),
                store,
                *([identity.seed_secret] if identity else []),
            ],
        ),
    )
    if services.gateway_url:
        pulumi.export("gatewayUrl", services.gateway_url)
    if services.identity_url:
        pulumi.export("identityUrl", services.identity_url)
        pulumi.export("identityIssuer", config.identity_public_url)
        pulumi.export(
            "identityPortForward",
            f"kubectl -n {meta.NAMESPACE} port-forward svc/{meta.IDENTITY_SERVICE} "
            f"{meta.IDENTITY_PORT}:{meta.IDENTITY_PORT}",
        )
    elif config.identity.issuer_url:
        pulumi.export("identityIssuer", config.identity.issuer_url)

pulumi.export("kafkaBootstrapServers", kafka.bootstrap_servers)
pulumi.export("kafkaCluster", kafka.cluster_name)
pulumi.export("storeHost", f"{store.host}:{store.port}")
pulumi.export(
    "checks", health_commands(airflow=config.airflow.enabled, services=config.services.enabled)
)
