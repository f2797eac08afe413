"""Shared fixtures: real Kafka brokers and a real Redis from `starling.harness`, and the
pinned Go-built tools (`go_tool`), built on first use.

Nothing here skips: if the Kafka jars cannot be fetched or `redis-server` is missing,
the fixture fails with the harness's error, which says what to install. CI installs
both (and runs `starling dev fetch` first so the download is its own step).

Tests that use any of these fixtures are marked `integration` automatically, so
`-m "not integration"` leaves them out without every test repeating the marker.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

    from starling.harness.kafka import KafkaCluster
    from starling.harness.redis import RedisServer

INTEGRATION_FIXTURES = frozenset({"kafka", "kafka_cluster3", "redis_server", "redis_client"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tool_progress(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a line now, past pytest's output capture: a cold tool build runs for minutes
    inside one fixture, and a silent terminal looks like a hang."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def report(line: str) -> None:
        if capture is None:  # run with `-p no:capture`: nothing to get past
            print(line, file=sys.__stderr__, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(line, flush=True)

    return report


@pytest.fixture(scope="session")
def go_tool(tool_progress: Callable[[str], None]) -> Callable[[str], Path]:
    """`go_tool("helm")` -> the pinned binary from the versioned tool cache.

    `make setup` does not build the Go tools; a tier builds what it asks for on first use
    (the chart tests helm, the control-plane tier its five tools), so a unit run never
    waits for the control-plane tools. Builds of the same tool are serialised by a lock
    file in the cache directory (`ensure_tool`): a second session or a concurrent
    `make tools` waits and then reuses the first one's binary.
    """
    from starling.toolchain import cached_tool, ensure_tool, tool_dir, tool_named

    def get(name: str) -> Path:
        found = cached_tool(name)
        if found is not None:
            return found
        tool = tool_named(name)
        tool_progress(
            f"[tools] {tool.name} {tool.version} is not built yet; building it into "
            f"{tool_dir(tool)} now, once per machine (`make tools` builds every tool ahead)"
        )
        return ensure_tool(tool, progress=tool_progress)

    return get


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaCluster]:
    """One KRaft node for the whole session: PLAINTEXT, and SASL_SSL with SCRAM-SHA-512
    (`kafka.client_config("sasl_ssl")` is the admin user). Authorization is off."""
    # Imported here so collecting unit tests never loads confluent-kafka/cryptography.
    from starling.harness.kafka import KafkaCluster

    with KafkaCluster.start(nodes=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def _kafka_cluster3_for_module() -> Iterator[KafkaCluster]:
    from starling.harness.kafka import KafkaCluster

    with KafkaCluster.start(nodes=3) as cluster:
        yield cluster


@pytest.fixture
def kafka_cluster3(_kafka_cluster3_for_module: KafkaCluster) -> Iterator[KafkaCluster]:
    """A 3-node cluster (internal topics RF 3, min ISR 2), shared within a module.

    Fault tests may stop or kill nodes; every stopped node is started again after the
    test, so the next test gets three running nodes without paying for a new cluster.
    """
    yield _kafka_cluster3_for_module
    _kafka_cluster3_for_module.start_stopped_nodes()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory for topic names unique to this test: `topic_name()` or `topic_name("dlq")`."""
    # Only letters, digits and '-': Kafka warns when '.' and '_' both occur in names.
    test_part = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:100]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test_part}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server (no persistence) for the session; use `redis_client` in tests."""
    from starling.harness.redis import RedisServer

    with RedisServer.start() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty database (flushed before the test)."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()
