"""JVM class-data sharing (AppCDS) archives that roughly halve Kafka JVM start time.

Loading and verifying the broker's few thousand classes (Scala included) is most of a
JVM's start on a small machine. Java 17 can dump the classes a run loaded into an
archive (`-XX:ArchiveClassesAtExit`) and map it on later starts
(`-XX:SharedArchiveFile`). Measured on 2 cores: StorageTool 1.0 s -> 0.6 s, broker port
open 2.9 s -> 1.5 s. Archives belong to one JVM build and one set of JVM options, so
they live in a directory keyed by both, next to the jars they were made from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from starling.harness.kafka_dist import KafkaDistribution


@dataclass(frozen=True)
class ClassDataArchives:
    directory: Path

    @property
    def storage_tool(self) -> Path:
        return self.directory / "storage-tool.jsa"

    @property
    def broker(self) -> Path:
        return self.directory / "broker.jsa"

    @property
    def failure_marker(self) -> Path:
        # Written when this JVM could not dump archives, so we do not retry every start.
        return self.directory / "UNSUPPORTED"

    def ready(self) -> bool:
        return self.storage_tool.is_file() and self.broker.is_file()

    def unsupported(self) -> bool:
        return self.failure_marker.is_file()


def archives_for(
    distribution: KafkaDistribution, java: str, jvm_options: Sequence[str]
) -> ClassDataArchives:
    """Where the archives for this JVM binary and option set live (they may not exist yet)."""
    java_binary = Path(os.path.realpath(java))
    stat = java_binary.stat()
    key_material = "\0".join(
        [str(java_binary), str(stat.st_size), str(stat.st_mtime_ns), *jvm_options]
    )
    key = hashlib.sha256(key_material.encode()).hexdigest()[:16]
    return ClassDataArchives(distribution.home / "class-data" / key)
