"""`starling dev kafka` as a user runs it: a real process, catalog topics, clean stop."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka.admin import AdminClient

from starling.topics import CATALOG

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dev_kafka_serves_the_catalog_topics_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "starling.cli", "dev", "kafka"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        output = []
        deadline = time.monotonic() + 120
        bootstrap = None
        while bootstrap is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            found = re.search(r"PLAINTEXT bootstrap: (\S+)", line)
            bootstrap = found.group(1) if found else None
        assert bootstrap, "no bootstrap address printed:\n" + "".join(output)

        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        assert CATALOG.names() <= set(metadata.topics)
        tweets = metadata.topics["tweets"]
        assert len(tweets.partitions) == CATALOG.get("tweets").partitions

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
