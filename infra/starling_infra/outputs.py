"""Ready-to-paste commands that show whether a stack is healthy."""

from __future__ import annotations

from starling_infra import meta


def health_commands(airflow: bool, services: bool) -> list[str]:
    ns = meta.NAMESPACE
    commands = [
        f"kubectl -n {meta.OPERATOR_NAMESPACE} get deploy,pods",
        f"kubectl -n {ns} get kafka,kafkanodepool,kafkatopic,kafkauser",
        f"kubectl -n {ns} wait kafka/{meta.KAFKA_CLUSTER} --for=condition=Ready --timeout=600s",
        f"kubectl -n {ns} wait kafkatopic,kafkauser --all --for=condition=Ready --timeout=300s",
        f"kubectl -n {ns} rollout status statefulset/{meta.STORE_NAME} --timeout=300s",
    ]
    if services:
        commands.append(
            f"kubectl -n {ns} get deploy,pods -l app.kubernetes.io/instance={meta.SERVICES_RELEASE}"
        )
    if airflow:
        commands.append(f"kubectl -n {meta.AIRFLOW_NAMESPACE} get pods")
    commands.append(f"kubectl get events -n {ns} --sort-by=.lastTimestamp")
    return commands
