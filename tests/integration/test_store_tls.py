"""The store over TLS, end to end: a real redis-server serving TLS only with a certificate
from the program's internal CA (tls.py), the real ingestion service (`starling run
ingestion`, its password and CA from files as in the cluster) writing timelines through
it, and clients that do not trust that CA, or reach it by a name it was not issued for,
refused."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from starling.events import TweetCreated
from starling.harness._process import free_ports
from starling.harness.redis import RedisServer, RedisTls
from starling.loadgen import TrafficConfig, TrafficGenerator
from starling.loadgen.sink import KafkaSink, TopicRouter, producer_config, send_events
from starling.runtime.config import RuntimeSettings
from starling.services.common import store_client
from starling.store.client import connect
from starling.store.graph import load_loadgen_graph
from tests.integration.services.helpers import Deployment, new_prefix, service_command, wait_for

if TYPE_CHECKING:
    from starling.harness.kafka import KafkaCluster

# The program's own CA code, so the certificates are the ones the cluster's store gets
# (infra/ is the Pulumi project, not an installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))
from starling_infra.tls import internal_ca

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = b"store-tls-test-seed-0123456789abcdef"
PASSWORD = "s3cret-store-password"
# Only the address: connecting as "localhost" must then fail the name check.
SERVER_NAMES = ["127.0.0.1"]


class Files:
    def __init__(self, directory: Path) -> None:
        ca = internal_ca(SEED)
        server = ca.issue("store", SERVER_NAMES)
        self.ca = directory / "ca.crt"
        self.cert = directory / "tls.crt"
        self.key = directory / "tls.key"
        self.other_ca = directory / "other-ca.crt"
        self.password = directory / "password"
        self.ca.write_text(ca.certificate_pem)
        self.cert.write_text(server.certificate_pem)
        self.key.write_text(server.private_key_pem)
        self.key.chmod(0o600)
        self.other_ca.write_text(
            internal_ca(b"another-stack-seed-0123456789abcdef").certificate_pem
        )
        self.password.write_text(PASSWORD + "\n")
        self.password.chmod(0o400)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("store-tls"))


@pytest.fixture(scope="module")
def tls_server(files: Files) -> Iterator[RedisServer]:
    server = RedisServer.start(
        tls=RedisTls(cert_file=files.cert, key_file=files.key, ca_file=files.ca),
        # A test password on the test server's command line; the cluster's is in a file.
        extra_config={"requirepass": PASSWORD},
    )
    try:
        yield server
    finally:
        server.stop()


def _settings(server: RedisServer, ca_file: Path, host: str = "127.0.0.1") -> RuntimeSettings:
    """The services' own settings and client path (STORE_TLS, STORE_CA_FILE, the file)."""
    return RuntimeSettings(
        starling_service="timelines",
        kafka_bootstrap_servers="unused:9092",
        store_host=host,
        store_port=server.port,
        store_password_file=Path(ca_file).parent / "password",
        store_tls=True,
        store_ca_file=Path(ca_file),
    )


def test_the_services_client_talks_tls_and_verifies_the_server(
    tls_server: RedisServer, files: Files
) -> None:
    client = store_client(_settings(tls_server, files.ca))
    assert client.ping() is True
    client.set("tls:check", "1")
    assert client.get("tls:check") == b"1"


def test_a_client_with_another_ca_is_refused(tls_server: RedisServer, files: Files) -> None:
    client = store_client(_settings(tls_server, files.other_ca))
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_a_name_the_certificate_does_not_carry_is_refused(
    tls_server: RedisServer, files: Files
) -> None:
    client = store_client(_settings(tls_server, files.ca, host="localhost"))
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_plain_text_gets_nothing(tls_server: RedisServer) -> None:
    client = connect(host="127.0.0.1", port=tls_server.port, password=PASSWORD)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()


def test_ingestion_fans_tweets_out_through_the_tls_store(
    kafka: KafkaCluster, tls_server: RedisServer, files: Files
) -> None:
    deployment = Deployment(
        kafka=kafka, prefix=new_prefix(), store_host="127.0.0.1", store_port=tls_server.port
    )
    deployment.create_topics()
    generator = TrafficGenerator(TrafficConfig(seed=12, users=50, mix=(100.0, 0.0, 0.0)))
    tweets = [e for e in generator.events(80) if isinstance(e, TweetCreated)][:40]
    client = store_client(_settings(tls_server, files.ca))
    load_loadgen_graph(client, generator)
    before = sum(int(client.zcard(f"tl:{user}")) for user in range(generator.config.users + 1))

    env = deployment.env(
        "ingestion",
        STORE_TLS="true",
        STORE_CA_FILE=str(files.ca),
        STORE_PASSWORD_FILE=str(files.password),
    )
    process = subprocess.Popen(
        service_command("ingestion"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        report = send_events(
            tweets,
            KafkaSink(producer_config(kafka.bootstrap_servers)),
            TopicRouter(prefix=deployment.prefix),
        )
        assert report.ok, report.summary()

        def entries() -> int:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            return sum(
                int(client.zcard(f"tl:{user}")) for user in range(generator.config.users + 1)
            )

        wait_for(lambda: entries() > before, 60, "ingestion to write timelines over TLS")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    output = process.stdout.read().decode() if process.stdout else ""
    assert code == 0, output
    assert PASSWORD not in output


def test_the_programs_valkey_conf_serves_tls_and_its_probe_passes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The config the program renders (store.valkey_conf), with its paths moved under a
    temporary directory, starts a real server; the StatefulSet's probe command passes."""
    from starling_infra import meta, store

    ca = internal_ca(SEED)
    server = ca.issue("store", store.store_dns_names())
    for name, pem in (
        ("tls.crt", server.certificate_pem),
        ("tls.key", server.private_key_pem),
        ("ca.crt", ca.certificate_pem),
        ("password", PASSWORD),
    ):
        (tmp_path / name).write_text(pem)
    (port,) = free_ports(1)
    conf = (
        store.valkey_conf(PASSWORD, False, 64 * 2**20)
        .replace(store.TLS_DIR, str(tmp_path))
        .replace(f"dir {store.DATA_DIR}", f"dir {tmp_path}")
        .replace(f"tls-port {meta.STORE_PORT}", f"tls-port {port}")
        .replace("bind * -::*", "bind 127.0.0.1")
    )
    (tmp_path / "valkey.conf").write_text(conf)
    probe = (
        store.PROBE.replace(f"{store.CONFIG_DIR}/", f"{tmp_path}/")
        .replace(f"{store.TLS_DIR}/", f"{tmp_path}/")
        .replace(f"-p {meta.STORE_PORT}", f"-p {port}")
        .replace("valkey-cli", "redis-cli")
    )
    process = subprocess.Popen(
        [redis_server.executable, str(tmp_path / "valkey.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: subprocess.run(["sh", "-c", probe], check=False).returncode == 0,
            15,
            "the probe to pass against the program's config",
        )
        assert PASSWORD not in probe
    finally:
        process.terminate()
        process.wait(10)
