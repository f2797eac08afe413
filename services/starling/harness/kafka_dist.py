"""Apache Kafka broker jars from Maven Central, cached per version under `cache_root()`.

There is no Kafka tarball reachable from the machines this project runs on, only Maven
Central. `kafka_2.13` plus its runtime dependencies is the whole broker; we add a log4j2
backend so the broker can write its log to a file. Maven does the resolving and
downloading: a generated one-dependency pom and `dependency:copy-dependencies`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starling.paths import cache_root

# Strimzi 1.2 deploys Kafka 4.3.x and defaults to 4.3.1, so tests run the broker the
# platform runs. Kafka 4.3.1 still depends on SLF4J 1.7, hence log4j-slf4j-impl (the
# SLF4J 1.x binding), not the log4j-slf4j2-impl provider.
KAFKA_VERSION = "4.3.1"
SCALA_BINARY_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"
# Pinned so the copy step behaves the same whatever Maven's default plugin version is.
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

# Written last into a finished cache directory; its presence is what "cached" means.
MANIFEST_NAME = "starling-kafka.json"

Progress = Callable[[str], None]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class KafkaFetchError(RuntimeError):
    """The Kafka jars could not be fetched; the message says which artifact and why."""


@dataclass(frozen=True)
class KafkaDistribution:
    """A cached, complete set of broker jars for one Kafka version."""

    version: str
    home: Path

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def classpath(self) -> str:
        # The JVM expands a trailing `*` itself, which keeps command lines short.
        return str(self.libs / "*")

    def jar_names(self) -> list[str]:
        return sorted(p.name for p in self.libs.glob("*.jar"))


def kafka_artifact(version: str = KAFKA_VERSION) -> str:
    return f"org.apache.kafka:kafka_{SCALA_BINARY_VERSION}:{version}"


def distribution_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}"


def cached_distribution(version: str = KAFKA_VERSION) -> KafkaDistribution | None:
    """The cached distribution for `version`, or None when it was never fully fetched."""
    home = distribution_dir(version)
    if (home / MANIFEST_NAME).is_file() and any((home / "libs").glob("kafka_*.jar")):
        return KafkaDistribution(version=version, home=home)
    return None


def ensure_kafka(
    version: str = KAFKA_VERSION, *, progress: Progress | None = None
) -> KafkaDistribution:
    """Return the cached broker jars for `version`, fetching them with Maven on a miss.

    The fetch builds into a temporary sibling directory and renames it into place at the
    end, so an interrupted or failed fetch never leaves something that looks cached.
    """
    report = progress if progress is not None else print_progress
    cached = cached_distribution(version)
    if cached is not None:
        return cached

    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaFetchError(
            f"cannot fetch {kafka_artifact(version)}: `mvn` is not on PATH "
            "(install Maven, e.g. `apt-get install -y maven`)"
        )

    final_home = distribution_dir(version)
    final_home.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging_dirs(final_home.parent)
    # Same parent as the final directory so the closing rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".kafka-{version}.partial-", dir=final_home.parent))
    try:
        report(f"fetching Kafka {version} jars from Maven into {final_home} ...")
        started = time.monotonic()
        _run_maven(mvn, version, staging, report)
        elapsed = time.monotonic() - started
        size = sum(p.stat().st_size for p in (staging / "libs").glob("*.jar"))
        manifest = {
            "kafka_version": version,
            "artifact": kafka_artifact(version),
            "log4j_version": LOG4J_VERSION,
            "fetch_seconds": round(elapsed, 1),
            "bytes": size,
            "jars": sorted(p.name for p in (staging / "libs").glob("*.jar")),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if final_home.exists() and cached_distribution(version) is None:
            # Not a finished cache (created by hand, or by an older layout): replace it.
            shutil.rmtree(final_home)
        try:
            staging.rename(final_home)
        except OSError:
            # Another process finished the same fetch first; its copy is as good as ours.
            if cached_distribution(version) is None:
                raise
        report(
            f"fetching Kafka {version} jars from Maven ... done in {elapsed:.0f} s, "
            f"{size / 1e6:.0f} MB"
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    result = cached_distribution(version)
    if result is None:  # pragma: no cover - only if the cache vanished under us
        raise KafkaFetchError(f"Kafka {version} cache at {final_home} is incomplete")
    return result


def _remove_abandoned_staging_dirs(parent: Path) -> None:
    """Delete staging dirs left by fetches that were SIGKILLed (no `finally` ran).

    Only old ones: a young one may belong to a fetch running right now in another process.
    """
    cutoff = time.time() - 3600
    for staging in parent.glob(".kafka-*.partial-*"):
        try:
            if staging.stat().st_mtime < cutoff:
                shutil.rmtree(staging, ignore_errors=True)
        except FileNotFoundError:
            pass


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _pom(version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>starling.harness</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_BINARY_VERSION}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def _run_maven(mvn: str, version: str, staging: Path, report: Progress) -> None:
    pom = staging / "pom.xml"
    pom.write_text(_pom(version))
    command = [
        mvn,
        "--batch-mode",
        "--quiet",
        "-Dstyle.color=never",
        # Re-check artifacts an earlier failed attempt recorded as missing, so a network
        # blip does not poison the local Maven repository until its update interval.
        "--update-snapshots",
        "--file",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging / 'libs'}",
        "-DincludeScope=runtime",
    ]
    finished = threading.Event()

    def heartbeat() -> None:
        # Maven is silent in quiet mode while it downloads; a line every so often tells
        # a CI log reader the step is alive rather than hung.
        started = time.monotonic()
        while not finished.wait(15.0):
            report(
                f"  ... still fetching Kafka {version} jars ({time.monotonic() - started:.0f} s)"
            )

    ticker = threading.Thread(target=heartbeat, name="kafka-fetch-heartbeat", daemon=True)
    ticker.start()
    try:
        completed = subprocess.run(
            command,
            cwd=staging,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        finished.set()
        ticker.join()
    pom.unlink(missing_ok=True)
    if completed.returncode != 0 or not any((staging / "libs").glob("kafka_*.jar")):
        # Maven 3.8 still emits colour resets in batch mode; they garble CI logs.
        plain = _ANSI_ESCAPE.sub("", completed.stdout + completed.stderr)
        output = [line for line in plain.splitlines() if line.strip() not in ("", "[ERROR]")]
        tail = "\n".join(output[-25:]) or "(mvn printed nothing)"
        raise KafkaFetchError(
            f"could not fetch {kafka_artifact(version)} with Maven "
            f"(`mvn dependency:copy-dependencies` "
            f"exited {completed.returncode}); last output:\n{tail}"
        )
