"""JMX Prometheus exporter rules for the brokers and controllers.

A short, deliberate list: the signals a Starling operator looks at (throughput per topic,
under-replicated and under-min-ISR partitions, offline partitions, request latency, KRaft
health). Everything else stays unexported to keep the scrape cheap.
"""

from __future__ import annotations

import json

CONFIG_KEY = "kafka-metrics-config.yml"

_RULES: list[dict[str, object]] = [
    {
        # BytesInPerSec, MessagesInPerSec, FailedProduceRequestsPerSec, ... per topic.
        "pattern": r"kafka.server<type=BrokerTopicMetrics, name=(\w+)PerSec, topic=(.+)><>Count",
        "name": "kafka_server_brokertopicmetrics_$1_total",
        "type": "COUNTER",
        "labels": {"topic": "$2"},
    },
    {
        "pattern": r"kafka.server<type=BrokerTopicMetrics, name=(\w+)PerSec><>Count",
        "name": "kafka_server_brokertopicmetrics_$1_total",
        "type": "COUNTER",
    },
    {
        # UnderReplicatedPartitions, UnderMinIsrPartitionCount, PartitionCount, LeaderCount.
        "pattern": r"kafka.server<type=ReplicaManager, name=(\w+)><>Value",
        "name": "kafka_server_replicamanager_$1",
        "type": "GAUGE",
    },
    {
        # ActiveControllerCount, OfflinePartitionsCount, GlobalPartitionCount.
        "pattern": r"kafka.controller<type=KafkaController, name=(\w+)><>Value",
        "name": "kafka_controller_kafkacontroller_$1",
        "type": "GAUGE",
    },
    {
        "pattern": (
            r"kafka.network<type=RequestMetrics, name=TotalTimeMs, "
            r"request=(Produce|FetchConsumer|FetchFollower)><>(\d+)thPercentile"
        ),
        "name": "kafka_network_requestmetrics_totaltimems",
        "type": "GAUGE",
        "labels": {"request": "$1", "quantile": "0.$2"},
    },
    {
        # KRaft: current leader, epoch, high watermark, commit latency.
        "pattern": r"kafka.server<type=raft-metrics><>([a-z-]+)",
        "name": "kafka_server_raftmetrics_$1",
        "type": "GAUGE",
    },
    {
        "pattern": r"kafka.server<type=KafkaServer, name=BrokerState><>Value",
        "name": "kafka_server_kafkaserver_brokerstate",
        "type": "GAUGE",
    },
]


def exporter_config() -> str:
    """The exporter's config as the ConfigMap value Strimzi reads. The exporter parses YAML,
    and JSON is YAML, so the standard library is enough."""
    return json.dumps(
        {"lowercaseOutputName": True, "lowercaseOutputLabelNames": True, "rules": _RULES},
        indent=2,
    )
