"""Names, versions and labels shared by every component: one place to bump a pin."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Namespaces. Fixed names keep the `kubectl` commands in the docs and outputs copy-pasteable.
NAMESPACE = "starling"
AIRFLOW_NAMESPACE = "starling-airflow"
OPERATOR_NAMESPACE = "strimzi"

# Strimzi and Kafka (see ../shared/reference/platform-facts.md).
STRIMZI_VERSION = "1.2.0"
STRIMZI_CHART = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
KAFKA_VERSION = "4.3.1"
KAFKA_METADATA_VERSION = "4.3-IV0"
KAFKA_CLUSTER = "starling"
KAFKA_TLS_PORT = 9093
KAFKA_BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap.{NAMESPACE}.svc:{KAFKA_TLS_PORT}"
# Written by the Strimzi Cluster Operator: the CA that signs the brokers' certificates.
KAFKA_CLUSTER_CA_SECRET = f"{KAFKA_CLUSTER}-cluster-ca-cert"

# Airflow (official chart).
AIRFLOW_CHART = "airflow"
AIRFLOW_CHART_REPO = "https://airflow.apache.org"
AIRFLOW_CHART_VERSION = "1.22.0"
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_RELEASE = "starling-airflow"
AIRFLOW_API_PORT = 8080
# Labels the official chart puts on every pod it renders (Deployments, StatefulSets and the
# KubernetesExecutor's pod template alike): `tier: airflow`, `release: <release>` and
# `component: <scheduler|worker|triggerer|dag-processor|api-server|...>`.
AIRFLOW_POD_LABELS = {"tier": "airflow", "release": AIRFLOW_RELEASE}
# The components that run task code (scheduler: LocalExecutor runs tasks in it; worker:
# Celery and Kubernetes executors) or trigger code (triggerer): the ones that reach the store.
AIRFLOW_TASK_COMPONENTS = ("scheduler", "worker", "triggerer")

# Our services chart (built alongside this program) and its release.
SERVICES_CHART_DIR = REPO_ROOT / "charts" / "starling-services"
SERVICES_RELEASE = "starling-services"
SERVICE_NAMES = ("ingestion", "trends", "timelines", "notifier", "gateway", "identity")
GATEWAY_PORT = 8080
IDENTITY_PORT = 8081
METRICS_PORT = 9100
# The built-in identity service: its seed Secret (mounted as a file) and in-cluster address.
IDENTITY_SEED_SECRET = "starling-identity-seed"
IDENTITY_SEED_KEY = "seed"
IDENTITY_SERVICE = f"{SERVICES_RELEASE}-identity"
IDENTITY_IN_CLUSTER_URL = f"http://{IDENTITY_SERVICE}.{NAMESPACE}.svc:{IDENTITY_PORT}"

# The store.
STORE_NAME = "starling-valkey"
STORE_PORT = 6379

PART_OF = "starling"


def labels(name: str, component: str, instance: str = "starling") -> dict[str, str]:
    """The `app.kubernetes.io/*` labels every object we create carries."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector_labels(name: str, instance: str = "starling") -> dict[str, str]:
    """The immutable subset used in selectors (a selector must not change between versions)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance}
