"""Real Apache Kafka brokers (KRaft, combined broker+controller) as local processes.

Each node listens on 127.0.0.1 with three listeners on ports picked at start:

- PLAINTEXT: what most tests use; also the inter-broker listener;
- CONTROLLER: the KRaft quorum;
- SASL_SSL with SCRAM-SHA-512: the security the platform deploys, so client settings
  can be exercised exactly as services will use them against Strimzi.

Usage::

    with KafkaCluster.start(nodes=3) as cluster:
        cluster.create_topics([("orders", 3, 3, {"min.insync.replicas": "2"})])
        producer = Producer(cluster.client_config())
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from starling.harness import _process
from starling.harness.class_data import ClassDataArchives, archives_for
from starling.harness.kafka_dist import (
    KAFKA_VERSION,
    KafkaDistribution,
    Progress,
    ensure_kafka,
    print_progress,
)
from starling.harness.tls import TlsFiles, write_tls_files

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

Security = Literal["plaintext", "sasl_ssl"]
SCRAM_MECHANISM = "SCRAM-SHA-512"
ADMIN_USER = "admin"

# (name, partitions, replication factor, topic configs); the config map may be omitted.
TopicRequest = tuple[str, int, int] | tuple[str, int, int, Mapping[str, str]]

# Serial GC and C1-only JIT start brokers faster on small machines and cost nothing at
# test load. Measured on 2 cores (Kafka 4.3.1, Java 17, before class-data sharing),
# median start of 1 / 3 nodes: JVM defaults 4.0 / 11.0 s; SerialGC 3.6 / 14.6 s;
# SerialGC + TieredStopAtLevel=1 2.7 / 9.2 s.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Starling harness: broker logs go to a file per node, never to the console. -->
<Configuration status="warn">
  <Appenders>
    <File name="server" fileName="${sys:kafka.logs.dir}/server.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
    <File name="authorizer" fileName="${sys:kafka.logs.dir}/authorizer.log" append="true">
      <PatternLayout pattern="[%d] %p %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="@AUTHORIZER_LEVEL@" additivity="false">
      <AppenderRef ref="authorizer"/>
    </Logger>
  </Loggers>
</Configuration>
"""

# One authorizer decision as the StandardAuthorizer logs it, e.g. "Principal = User:trends
# is Allowed operation = READ from host = 127.0.0.1 on resource = Topic:LITERAL:trends for
# request = Fetch with resourceRefCount = 1 based on rule MatchingAcl(acl=StandardAcl[
# resourceType=TOPIC, resourceName=trends, patternType=LITERAL, principal=User:trends,
# host=*, operation=READ, permissionType=ALLOW])".
_DECISION = re.compile(
    r"Principal = (?P<principal>\S+) is (?P<verdict>Allowed|Denied) operation = "
    r"(?P<operation>\w+) from host = \S+ on resource = (?P<resource>\S+)"
)
_MATCHING_ACL = re.compile(
    r"StandardAcl\[resourceType=(?P<type>\w+), resourceName=(?P<name>[^,]*), "
    r"patternType=(?P<pattern>\w+), principal=[^,]*, host=[^,]*, operation=(?P<operation>\w+)"
)


@dataclass(frozen=True)
class AuthorizerDecision:
    """One operation the authorizer allowed or denied, and for an ACL match the ACL."""

    principal: str  # "User:trends"
    allowed: bool
    operation: str  # "READ"
    resource: str  # "Topic:LITERAL:trends"
    # The matching ACL (None for a super user or a default decision).
    acl: tuple[str, str, str, str] | None  # (type, name, pattern, operation), Kafka's names


def parse_authorizer_log(text: str) -> list[AuthorizerDecision]:
    """The decisions in an `authorizer.log` (see `KafkaCluster.start(audit=...)`)."""
    decisions: list[AuthorizerDecision] = []
    for line in text.splitlines():
        match = _DECISION.search(line)
        if match is None:
            continue
        rule = _MATCHING_ACL.search(line, match.end())
        acl = None
        if rule is not None:
            acl = (rule["type"], rule["name"], rule["pattern"], rule["operation"])
        decisions.append(
            AuthorizerDecision(
                principal=match["principal"],
                allowed=match["verdict"] == "Allowed",
                operation=match["operation"],
                resource=match["resource"],
                acl=acl,
            )
        )
    return decisions


class KafkaHarnessError(RuntimeError):
    """A broker did not format, start, stop or answer as expected."""


@dataclass(frozen=True)
class JvmSettings:
    """How node JVMs are launched; the per-tool options carry class-data-sharing flags."""

    java: str
    heap: str
    options: tuple[str, ...]
    storage_tool_options: tuple[str, ...] = ()
    broker_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodePorts:
    plaintext: int
    controller: int
    sasl_ssl: int


def _kafka_uuid() -> str:
    """A random id in Kafka's Uuid text form (URL-safe base64 of 16 bytes, no padding)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's own generator avoids a leading '-' because CLI parsers read it as a flag.
        if not text.startswith("-"):
            return text


class KafkaNode:
    """One broker+controller JVM. Its id is also its index in `KafkaCluster.nodes`."""

    def __init__(
        self,
        node_id: int,
        ports: NodePorts,
        directory: Path,
        distribution: KafkaDistribution,
        jvm: JvmSettings,
    ) -> None:
        self.node_id = node_id
        self.ports = ports
        self.directory = directory
        self.directory_id = _kafka_uuid()
        self._distribution = distribution
        self._jvm = jvm
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def properties_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def logs_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "console.log"

    @property
    def authorizer_log(self) -> Path:
        """Denied operations always; with the cluster's `audit` on, allowed ones too."""
        return self.logs_dir / "authorizer.log"

    @property
    def bootstrap_server(self) -> str:
        return f"127.0.0.1:{self.ports.plaintext}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def java_command(
        self, main_class: str, *arguments: str, heap: str, extra_options: Sequence[str] = ()
    ) -> list[str]:
        return [
            self._jvm.java,
            # No -Xms: the JVM's default initial heap is capped at -Xmx, any fixed one
            # would break small `heap` values.
            f"-Xmx{heap}",
            *self._jvm.options,
            *extra_options,
            f"-Dlog4j2.configurationFile={self.directory.parent / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            self._distribution.classpath,
            main_class,
            *arguments,
        ]

    def storage_tool_command(self, *arguments: str) -> list[str]:
        return self.java_command(
            "kafka.tools.StorageTool",
            *arguments,
            heap="256m",
            extra_options=self._jvm.storage_tool_options,
        )

    def launch(self) -> None:
        """Start the JVM; readiness is the cluster's business (it knows the other nodes)."""
        if self.is_running:
            raise KafkaHarnessError(f"Kafka node {self.node_id} is already running")
        self._process = _process.start_session_process(
            self.java_command(
                "kafka.Kafka",
                str(self.properties_file),
                heap=self._jvm.heap,
                extra_options=self._jvm.broker_options,
            ),
            cwd=self.directory,
            output=self.console_log,
        )

    def request_stop(self) -> None:
        """Ask for a graceful (controlled) shutdown without waiting for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def stop(self, timeout: float = 30.0, *, warn_on_kill: bool = True) -> None:
        """Graceful shutdown (SIGTERM), SIGKILL if it takes longer than `timeout`."""
        if self._process is not None:
            _process.stop_process(self._process, timeout=timeout, warn_on_kill=warn_on_kill)

    def kill(self) -> None:
        if self._process is not None:
            _process.kill_process(self._process)

    def exit_code(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return (
            f"--- {self.server_log} (last {lines} lines) ---\n"
            f"{_process.tail(self.server_log, lines)}\n"
            f"--- {self.console_log} (last {lines} lines) ---\n"
            f"{_process.tail(self.console_log, lines)}"
        )


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaHarnessError(
            "no `java` on PATH and JAVA_HOME unset: Kafka 4.x needs Java 17+ "
            "(e.g. `apt-get install -y openjdk-17-jre-headless`)"
        )
    return java


_live_clusters: _process.StopAtExit[KafkaCluster] = _process.StopAtExit()


class KafkaCluster(_process.StopsOnExit):
    """A running set of KRaft nodes in a private temporary directory.

    Create it with `KafkaCluster.start(...)`; `stop()` (or leaving a `with` block) ends
    every process and deletes the directory, whatever state the nodes are in.
    """

    def __init__(
        self,
        *,
        directory: Path,
        nodes: list[KafkaNode],
        tls: TlsFiles,
        admin_password: str,
        authorizer: bool,
        version: str,
        kept: bool = False,
        audit: bool = False,
    ) -> None:
        self.directory = directory
        # A kept directory (given by the caller) survives stop(): the next start on it
        # resumes the same cluster (id, topics, messages, committed offsets).
        self.kept = kept
        self.nodes = nodes
        self.tls = tls
        self.admin_user = ADMIN_USER
        self.admin_password = admin_password
        self.authorizer = authorizer
        self.audit = audit
        self.version = version
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        nodes: int = 1,
        *,
        authorizer: bool = False,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        class_data_sharing: bool = True,
        ready_timeout: float = 120.0,
        progress: Progress | None = None,
        directory: Path | None = None,
        audit: bool = False,
    ) -> KafkaCluster:
        """Fetch the jars if needed, format storage and start `nodes` nodes; wait until ready.

        Without `directory` the cluster lives in a temporary directory deleted by `stop()`.
        With one, the directory is kept: storage is formatted only when it is empty, so a
        later start on it resumes the same cluster (its id, KRaft log, topics, messages and
        committed offsets, the admin user's password); ports and TLS files are new each
        start. It must hold the same number of nodes each time.

        `authorizer=True` turns on the StandardAuthorizer (deny when no ACL matches) with
        `User:ANONYMOUS` (PLAINTEXT, inter-broker, controller) and `User:admin` as super
        users, so tests can exercise ACLs over SASL_SSL for real.

        `class_data_sharing` maps a cached AppCDS archive into every JVM (recorded once
        per machine, see `class_data.py`), which roughly halves JVM start time.

        Each node's `authorizer.log` holds the authorizer's denials; with `audit=True` also
        every operation it allowed and the ACL that allowed it (`parse_authorizer_log`),
        so a test can tell which grants were used.
        """
        if nodes not in (1, 3):
            # Two nodes cannot keep a KRaft quorum through a failure; more is just slow.
            raise ValueError(f"nodes must be 1 or 3, not {nodes}")
        distribution = ensure_kafka(version, progress=progress)
        jvm = JvmSettings(java=_java_executable(), heap=heap, options=tuple(jvm_options))
        if class_data_sharing:
            archives = prepare_class_data_archives(distribution, jvm, progress=progress)
            if archives is not None:
                jvm = JvmSettings(
                    java=jvm.java,
                    heap=heap,
                    options=jvm.options,
                    storage_tool_options=(f"-XX:SharedArchiveFile={archives.storage_tool}",),
                    broker_options=(f"-XX:SharedArchiveFile={archives.broker}",),
                )
        return cls._launch(
            nodes,
            distribution=distribution,
            jvm=jvm,
            authorizer=authorizer,
            ready_timeout=ready_timeout,
            kept_directory=directory,
            audit=audit,
        )

    @classmethod
    def _launch(
        cls,
        nodes: int,
        *,
        distribution: KafkaDistribution,
        jvm: JvmSettings,
        authorizer: bool,
        ready_timeout: float,
        kept_directory: Path | None = None,
        audit: bool = False,
    ) -> KafkaCluster:
        kept = kept_directory is not None
        if kept_directory is not None:
            directory = kept_directory.resolve()
            directory.mkdir(parents=True, exist_ok=True)
            _check_kept_nodes(directory, nodes)
        else:
            directory = Path(tempfile.mkdtemp(prefix=f"starling-kafka{nodes}-"))
            # Only a temporary directory is the watchdog's to delete if we die.
            _process.reaper.watch_directory(directory)
        cluster: KafkaCluster | None = None
        try:
            ports = _process.free_ports(3 * nodes)
            node_list = [
                KafkaNode(
                    node_id=index,
                    ports=NodePorts(*ports[3 * index : 3 * index + 3]),
                    directory=directory / f"node-{index}",
                    distribution=distribution,
                    jvm=jvm,
                )
                for index in range(nodes)
            ]
            tls = write_tls_files(directory / "tls")
            cluster = cls(
                directory=directory,
                nodes=node_list,
                tls=tls,
                admin_password=_admin_password(directory) if kept else _kafka_uuid(),
                authorizer=authorizer,
                version=distribution.version,
                kept=kept,
                audit=audit,
            )
            _live_clusters.add(cluster)
            cluster._write_configuration()
            if not cluster.is_formatted():
                cluster._format_storage()
            for node in node_list:
                node.launch()
            cluster._wait_ready(node_list, timeout=ready_timeout)
            cluster._create_offsets_topic(timeout=ready_timeout)
            return cluster
        except BaseException:
            if cluster is not None:
                cluster.stop()
            elif not kept:
                shutil.rmtree(directory, ignore_errors=True)
                _process.reaper.forget_directory(directory)
            raise

    def is_formatted(self) -> bool:
        """Whether every node's log directory already holds formatted KRaft storage."""
        return all((node.data_dir / "meta.properties").is_file() for node in self.nodes)

    def stop(self, grace: float | None = None) -> None:
        """End every node (SIGTERM, SIGKILL after `grace` s) and delete a temporary cluster
        directory (a kept one stays).

        Nodes are stopped together: a temporary cluster's data is thrown away, so there is
        no point in a one-by-one controlled shutdown (which stalls once the quorum is gone);
        `grace` defaults to 1 s. A kept cluster gets 15 s, so a clean shutdown saves the
        next start its log recovery.
        """
        if self._stopped:
            return
        self._stopped = True
        if grace is None:
            grace = 15.0 if self.kept else 1.0
        try:
            for node in self.nodes:
                node.request_stop()
            deadline = time.monotonic() + grace
            for node in self.nodes:
                node.stop(timeout=max(0.0, deadline - time.monotonic()), warn_on_kill=False)
        finally:
            for node in self.nodes:
                node.kill()
            if not self.kept:
                shutil.rmtree(self.directory, ignore_errors=True)
                _process.reaper.forget_directory(self.directory)
            _live_clusters.discard(self)

    # ---------------------------------------------------------------- fault injection

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Gracefully stop one node (controlled shutdown); its data dir and ports are kept."""
        self.nodes[node_id].stop(timeout=timeout)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; its data dir and ports are kept."""
        self.nodes[node_id].kill()

    def start_node(self, node_id: int, ready_timeout: float = 60.0) -> None:
        """Start a stopped or killed node again with the same id, data dir and ports."""
        node = self.nodes[node_id]
        node.launch()
        self._wait_ready([node], timeout=ready_timeout)

    def start_stopped_nodes(self, ready_timeout: float = 60.0) -> None:
        """Bring every stopped or killed node back (fixtures call this after fault tests)."""
        stopped = [node for node in self.nodes if not node.is_running]
        for node in stopped:
            node.launch()
        if stopped:
            self._wait_ready(stopped, timeout=ready_timeout)

    # ---------------------------------------------------------------- addresses and clients

    @property
    def bootstrap_servers(self) -> str:
        """PLAINTEXT bootstrap list (all nodes, running or not)."""
        return ",".join(f"127.0.0.1:{node.ports.plaintext}" for node in self.nodes)

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        """SASL_SSL (SCRAM-SHA-512 over TLS) bootstrap list."""
        return ",".join(f"127.0.0.1:{node.ports.sasl_ssl}" for node in self.nodes)

    @property
    def ca_location(self) -> Path:
        return self.tls.ca_pem

    def client_config(
        self,
        security: Security = "plaintext",
        *,
        user: str | None = None,
        password: str | None = None,
    ) -> dict[str, str]:
        """A confluent-kafka (librdkafka) config dict for one of the client listeners.

        For `sasl_ssl`, `user`/`password` default to the admin user created at format
        time. Host-name verification stays on: the certificate names 127.0.0.1 and
        localhost.
        """
        if security == "plaintext":
            if user is not None or password is not None:
                raise ValueError("the PLAINTEXT listener does not authenticate users")
            return {"bootstrap.servers": self.bootstrap_servers}
        if security == "sasl_ssl":
            if user is None:
                user = self.admin_user
                password = self.admin_password if password is None else password
            if password is None:
                raise ValueError(f"password is required for SCRAM user {user!r}")
            return {
                "bootstrap.servers": self.sasl_ssl_bootstrap_servers,
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": user,
                "sasl.password": password,
                "ssl.ca.location": str(self.tls.ca_pem),
                "ssl.endpoint.identification.algorithm": "https",
            }
        raise ValueError(f"security must be 'plaintext' or 'sasl_ssl', not {security!r}")

    def admin(self, **overrides: str) -> AdminClient:
        """An AdminClient on the PLAINTEXT listener (a super user when the authorizer is on)."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({**self.client_config(), **overrides})

    # ---------------------------------------------------------------- topics and users

    def topic_names(self, timeout: float = 10.0) -> set[str]:
        """The topics the cluster has now, internal ones included."""
        return set(self.admin().list_topics(timeout=timeout).topics)

    def create_topics(self, topics: Iterable[TopicRequest], timeout: float = 30.0) -> None:
        """Create topics and wait until every running node sees every partition with a
        leader and a full ISR. Topics that already exist are left as they are."""
        from confluent_kafka import KafkaError, KafkaException

        # confluent-kafka re-exports these without `__all__`, which mypy --strict rejects.
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        requested: list[NewTopic] = []
        for request in topics:
            name, partitions, replication_factor = request[0], request[1], request[2]
            config = dict(request[3]) if len(request) == 4 else {}
            requested.append(
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    config=config,
                )
            )
        if not requested:
            return
        deadline = time.monotonic() + timeout
        # Keep a reference: destroying the client would fail its pending futures.
        admin = self.admin()
        futures = admin.create_topics(requested, operation_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=max(1.0, deadline - time.monotonic()))
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaHarnessError(f"could not create topic {name!r}: {error}") from error
        self._wait_topics_ready([topic.topic for topic in requested], deadline)

    def _wait_topics_ready(self, names: list[str], deadline: float) -> None:
        from confluent_kafka import KafkaException

        probes = {node.node_id: _probe_admin(node) for node in self.nodes if node.is_running}
        while True:
            problem = ""
            for node_id, probe in probes.items():
                try:
                    topics = probe.list_topics(timeout=2.0).topics
                except KafkaException as error:
                    problem = f"node {node_id} did not answer: {error}"
                    break
                problem = next(
                    (
                        f"{name} on node {node_id}: {why}"
                        for name in names
                        if (why := _topic_problem(topics.get(name)))
                    ),
                    "",
                )
                if problem:
                    break
            if not problem:
                return
            if time.monotonic() >= deadline:
                raise KafkaHarnessError(f"topics not ready in time ({problem})")
            time.sleep(0.1)

    def authorizer_decisions(self) -> list[AuthorizerDecision]:
        """Every decision in the nodes' authorizer logs so far (allowed ones need `audit`)."""
        decisions: list[AuthorizerDecision] = []
        for node in self.nodes:
            if node.authorizer_log.is_file():
                decisions += parse_authorizer_log(node.authorizer_log.read_text(errors="replace"))
        return decisions

    def add_scram_user(self, name: str, password: str, timeout: float = 30.0) -> None:
        """Create or update a SCRAM-SHA-512 user, and wait until every running node knows it.

        Goes through the PLAINTEXT listener, which is a super user when the authorizer is on.
        """
        from confluent_kafka.admin import (  # type: ignore[attr-defined]  # see create_topics
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        # 4096 iterations is the minimum Kafka accepts for SHA-512 and the cheapest to check.
        upsertion = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode()
        )
        admin = self.admin()
        futures = admin.alter_user_scram_credentials([upsertion])
        for future in futures.values():
            future.result(timeout=timeout)
        # The credential reaches each broker through the metadata log; clients that
        # connect right away to a lagging broker would otherwise fail authentication.
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.is_running:
                continue
            while not _node_knows_scram_user(node, name):
                if time.monotonic() >= deadline:
                    raise KafkaHarnessError(
                        f"SCRAM user {name!r} not visible on node {node.node_id} in time"
                    )
                time.sleep(0.1)

    # ---------------------------------------------------------------- internals

    def _write_configuration(self) -> None:
        level = "DEBUG" if self.audit else "INFO"
        (self.directory / "log4j2.xml").write_text(_LOG4J2_XML.replace("@AUTHORIZER_LEVEL@", level))
        node_count = len(self.nodes)
        replication = node_count
        min_isr = 2 if node_count >= 3 else 1
        quorum = ",".join(f"127.0.0.1:{node.ports.controller}" for node in self.nodes)
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            node.logs_dir.mkdir(parents=True, exist_ok=True)
            settings: dict[str, str] = {
                "process.roles": "broker,controller",
                "node.id": str(node.node_id),
                "controller.quorum.bootstrap.servers": quorum,
                "listeners": (
                    f"PLAINTEXT://127.0.0.1:{node.ports.plaintext},"
                    f"CONTROLLER://127.0.0.1:{node.ports.controller},"
                    f"SASL_SSL://127.0.0.1:{node.ports.sasl_ssl}"
                ),
                "listener.security.protocol.map": (
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
                ),
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.server_pem),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca_pem),
                "log.dirs": str(node.data_dir),
                "num.partitions": "1",
                "auto.create.topics.enable": "false",
                "group.initial.rebalance.delay.ms": "0",
                # Few internal-topic partitions: creating 50 of each is most of the
                # first-consumer-group latency on a fresh broker.
                "offsets.topic.num.partitions": "8",
                "offsets.topic.replication.factor": str(replication),
                "transaction.state.log.num.partitions": "8",
                "transaction.state.log.replication.factor": str(replication),
                "transaction.state.log.min.isr": str(min_isr),
                "share.coordinator.state.topic.num.partitions": "8",
                "share.coordinator.state.topic.replication.factor": str(replication),
                "share.coordinator.state.topic.min.isr": str(min_isr),
                # The cleaner's 128 MB default dedupe buffer would take a quarter of the heap.
                "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
                # Faster failure detection than the 2 s / 9 s defaults: a killed node is
                # fenced within 4 s, and a restarted node is not refused for up to 9 s as
                # DUPLICATE_BROKER_REGISTRATION after the active controller moved (measured).
                "broker.heartbeat.interval.ms": "500",
                "broker.session.timeout.ms": "4000",
                "num.io.threads": "4",
                "num.network.threads": "2",
            }
            if self.authorizer:
                settings["authorizer.class.name"] = (
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                )
                settings["allow.everyone.if.no.acl.found"] = "false"
                settings["super.users"] = f"User:ANONYMOUS;User:{self.admin_user}"
            node.properties_file.write_text(
                "".join(f"{key}={value}\n" for key, value in settings.items())
            )

    def _format_storage(self) -> None:
        """Run the StorageTool for every node in parallel (each is a JVM start)."""
        if len(self.nodes) == 1:
            quorum_arguments = ["--standalone"]
        else:
            initial_controllers = ",".join(
                f"{node.node_id}@127.0.0.1:{node.ports.controller}:{node.directory_id}"
                for node in self.nodes
            )
            quorum_arguments = ["--initial-controllers", initial_controllers]
        cluster_id = _kafka_uuid()
        scram = f"{SCRAM_MECHANISM}=[name={self.admin_user},password={self.admin_password}]"
        running: list[tuple[KafkaNode, subprocess.Popen[bytes]]] = []
        for node in self.nodes:
            command = node.storage_tool_command(
                "format",
                "--config",
                str(node.properties_file),
                "--cluster-id",
                cluster_id,
                "--add-scram",
                scram,
                *quorum_arguments,
            )
            output = node.logs_dir / "format.log"
            running.append(
                (node, _process.start_session_process(command, cwd=node.directory, output=output))
            )
        failures: list[str] = []
        for node, formatter in running:
            try:
                code = formatter.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = -1
            _process.kill_process(formatter)
            if code != 0:
                failures.append(
                    f"node {node.node_id}: StorageTool format exited {code}:\n"
                    + _process.tail(node.logs_dir / "format.log", 30)
                )
        if failures:
            raise KafkaHarnessError("formatting KRaft storage failed\n" + "\n".join(failures))

    def _create_offsets_topic(self, timeout: float) -> None:
        """Have the broker create `__consumer_offsets` now rather than on the first
        consumer's FindCoordinator, which then waits out librdkafka's coordinator retry
        backoff (measured: first group join 1.2-3.2 s without this, ~0.3 s with it)."""
        admin = self.admin()
        # Any group lookup makes the broker auto-create the offsets topic; the group
        # itself need not exist, and errors while the topic is created do not matter.
        admin.describe_consumer_groups(["starling-harness-warm-up"], request_timeout=timeout)
        self._wait_topics_ready(["__consumer_offsets"], time.monotonic() + timeout)

    def _wait_ready(self, waiting_for: list[KafkaNode], timeout: float) -> None:
        """Wait until each node in `waiting_for` answers metadata requests and sees every
        running node (itself included) as a live, unfenced broker."""
        deadline = time.monotonic() + timeout
        pending = list(waiting_for)
        while pending:
            node = pending[0]
            exit_code = node.exit_code()
            if exit_code is not None:
                raise KafkaHarnessError(
                    f"Kafka node {node.node_id} exited with code {exit_code} during start\n"
                    + node.log_tail()
                )
            if _node_sees_brokers(node, {n.node_id for n in self.nodes if n.is_running}):
                pending.pop(0)
                continue
            if time.monotonic() >= deadline:
                raise KafkaHarnessError(
                    f"Kafka node {node.node_id} not ready within {timeout:.0f} s "
                    f"(PLAINTEXT {node.bootstrap_server})\n" + node.log_tail()
                )
            time.sleep(0.1)


def _check_kept_nodes(directory: Path, nodes: int) -> None:
    """A kept directory must hold exactly the nodes asked for, all formatted or none."""
    present = sorted(p.name for p in directory.glob("node-*") if p.is_dir())
    formatted = [
        name for name in present if (directory / name / "data" / "meta.properties").is_file()
    ]
    expected = [f"node-{index}" for index in range(nodes)]
    if formatted and formatted != expected:
        raise KafkaHarnessError(
            f"{directory} holds a Kafka cluster of {len(formatted)} formatted node(s)"
            f" ({', '.join(formatted)}), not {nodes}; start it with that many nodes, or"
            " delete the directory to start over"
        )


def _admin_password(directory: Path) -> str:
    """The admin SCRAM password of a kept cluster: generated once, readable by this user only
    (the admin user is created with it when storage is formatted)."""
    path = directory / "admin-password"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(_kafka_uuid() + "\n")
    return path.read_text().strip()


def _probe_admin(node: KafkaNode) -> AdminClient:
    """An AdminClient that talks to exactly this node and keeps quiet while it is down."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(
        {
            "bootstrap.servers": node.bootstrap_server,
            # Connection-refused noise is expected while the broker starts; callers report
            # the real failure themselves (with the broker's log).
            "log_level": "0",
            "reconnect.backoff.ms": "50",
            "reconnect.backoff.max.ms": "200",
        }
    )


def _node_sees_brokers(node: KafkaNode, expected: set[int]) -> bool:
    from confluent_kafka import KafkaException

    if not _process.port_accepts_connections(node.ports.plaintext):
        return False
    try:
        metadata = _probe_admin(node).list_topics(timeout=2.0)
    except KafkaException:
        return False
    return expected <= set(metadata.brokers)


def _topic_problem(topic: Any) -> str:  # TopicMetadata: not exported for type checkers
    """Why a topic's metadata is not usable yet ('' when it is)."""
    if topic is None:
        return "not in metadata"
    if topic.error is not None:
        return str(topic.error)
    if not topic.partitions:
        return "no partitions"
    for partition in topic.partitions.values():
        if partition.leader < 0:
            return f"partition {partition.id} has no leader"
        if len(partition.isrs) < len(partition.replicas):
            return f"partition {partition.id} ISR {partition.isrs} < {partition.replicas}"
    return ""


def _node_knows_scram_user(node: KafkaNode, name: str) -> bool:
    from confluent_kafka import KafkaException

    try:
        admin = _probe_admin(node)
        futures = admin.describe_user_scram_credentials([name])
        # Given a list of users, the client returns one future per user.
        assert isinstance(futures, dict)
        description = futures[name].result(timeout=5.0)
    except KafkaException:
        return False
    return any(
        info.mechanism.name == "SCRAM_SHA_512" for info in description.scram_credential_infos
    )


def prepare_class_data_archives(
    distribution: KafkaDistribution, jvm: JvmSettings, *, progress: Progress | None = None
) -> ClassDataArchives | None:
    """The AppCDS archives for this JVM, recorded now if missing; None if the JVM can't.

    Recording runs the StorageTool and a single throwaway broker once with
    `-XX:ArchiveClassesAtExit` (about 8 s on 2 cores). Archives are written into a
    staging directory and renamed into place, like the jar cache.
    """
    report = progress if progress is not None else print_progress
    archives = archives_for(distribution, jvm.java, jvm.options)
    if archives.ready():
        return archives
    if archives.unsupported():
        return None
    archives.directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=archives.directory.parent))
    recording = JvmSettings(
        java=jvm.java,
        heap=jvm.heap,
        options=jvm.options,
        storage_tool_options=(f"-XX:ArchiveClassesAtExit={staging / archives.storage_tool.name}",),
        broker_options=(f"-XX:ArchiveClassesAtExit={staging / archives.broker.name}",),
    )
    report("recording JVM class-data archive for faster Kafka starts ...")
    started = time.monotonic()
    try:
        try:
            cluster = KafkaCluster._launch(
                1, distribution=distribution, jvm=recording, authorizer=False, ready_timeout=120.0
            )
        except KafkaHarnessError as error:
            # Most likely the broker itself cannot start; the real start that follows
            # will report that properly, so this is not remembered as "unsupported".
            report(f"could not record a class-data archive; continuing without: {error}")
            return None
        try:
            # The JVM writes the archive while it exits, so this stop must be graceful.
            cluster.stop_node(0, timeout=60.0)
            exit_code = cluster.nodes[0].exit_code()
        finally:
            cluster.stop()
        recorded = ClassDataArchives(staging)
        if exit_code in (0, 143) and recorded.ready():
            try:
                staging.rename(archives.directory)
            except OSError:
                if not archives.ready():  # not a lost race with another process
                    raise
            elapsed = time.monotonic() - started
            report(f"recording JVM class-data archive ... done in {elapsed:.0f} s")
            return archives
        if exit_code in (0, 143):
            # A clean exit without an archive: this JVM cannot dump one (e.g. no base
            # CDS archive). Remember that so later starts do not pay for trying again.
            archives.directory.mkdir(parents=True, exist_ok=True)
            archives.failure_marker.write_text("ArchiveClassesAtExit produced no archive\n")
        report(f"no class-data archive (broker exit code {exit_code}); continuing without")
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_kafka(
    version: str = KAFKA_VERSION,
    *,
    heap: str = "512m",
    jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
    progress: Progress | None = None,
) -> KafkaDistribution:
    """Everything a later `KafkaCluster.start` would otherwise do on first use: fetch the
    jars and record the class-data archive (CI runs this as its own step)."""
    distribution = ensure_kafka(version, progress=progress)
    jvm = JvmSettings(java=_java_executable(), heap=heap, options=tuple(jvm_options))
    prepare_class_data_archives(distribution, jvm, progress=progress)
    return distribution
