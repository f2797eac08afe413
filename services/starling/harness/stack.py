"""`starling up`: the whole pipeline on this machine, in dependency order, until Ctrl-C.

Kafka and the store come from the harness (real processes); the identity service, the
gateway and the four stream services run as `python -m starling.run_cli <service>`
processes; Airflow is the harness's `AirflowStack`; the traffic generator is
`python -m starling.loadgen.cli`. Every process is started in its own session and
registered with the harness watchdog, so none outlives `starling up`, even on SIGKILL.

The data directory holds a layout marker, the identity service's signing seed (kept, so
tokens stay valid across restarts), one log per component and `state.json`, which
`starling down` and `starling status` read.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starling.harness import _process

LAYOUT_VERSION = 1
MARKER_FILE = "starling-data.json"
STATE_FILE = "state.json"
SEED_FILE = "identity-seed"
KAFKA_USERS_FILE = "kafka-users.json"
STREAM_SERVICES = ("ingestion", "trends", "timelines", "notifier")
DEV_PASSWORD = "starling-dev-password"
AUDIENCE = "starling"
# Gentle: enough for timelines and trends to fill within a minute, little CPU.
DEFAULT_RATE = 20.0
DEFAULT_USERS = 10_000
# How long a service may take from launch to /readyz (a cold import on a busy 2-core
# machine takes seconds; joining the group a few more).
READY_TIMEOUT_S = 120.0
# The services' own shutdown deadline: a local stop should take seconds, not 20 s.
SERVICE_SHUTDOWN_S = 5.0
# Variables that would point a child at something other than this stack.
_INHERITED_PREFIXES = ("STARLING_", "KAFKA_", "STORE_", "AIRFLOW__")
_INHERITED_NAMES = ("METRICS_PORT", "HTTP_PORT", "AIRFLOW_HOME", "AIRFLOW_CONFIG")


class StackError(RuntimeError):
    """A one-line reason `starling up` cannot start or keep running, naming the fix."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "starling"


# ---- the data directory ------------------------------------------------------------------


def prepare_data_dir(path: Path, *, fresh: bool) -> None:
    """Create (or with `fresh`, wipe and create) the data directory and check its layout."""
    if fresh and path.exists():
        if read_state(path) is not None and _alive(read_state(path) or {}):
            raise StackError(
                f"a stack is running from {path}; stop it with `starling down"
                f" --data-dir {path}` before --fresh"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER_FILE
    if marker.exists():
        check_layout(path)
    elif any(path.iterdir()):
        raise StackError(
            f"{path} is not empty and has no {MARKER_FILE} (not a Starling data directory,"
            " or one from before layout 1); pass --fresh to wipe it or choose another --data-dir"
        )
    else:
        marker.write_text(json.dumps({"layout": LAYOUT_VERSION}) + "\n")
    (path / "logs").mkdir(exist_ok=True)


def check_layout(path: Path) -> None:
    try:
        layout = json.loads((path / MARKER_FILE).read_text()).get("layout")
    except (OSError, ValueError, AttributeError):
        layout = None
    if layout != LAYOUT_VERSION:
        raise StackError(
            f"{path} was written with data layout {layout!r}, this starling uses"
            f" {LAYOUT_VERSION}; pass --fresh to wipe it or choose another --data-dir"
        )


def ensure_seed(path: Path) -> Path:
    """The identity service's signing seed, generated once, readable by this user only."""
    seed = path / SEED_FILE
    if not seed.exists():
        descriptor = os.open(seed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return seed


def ensure_kafka_passwords(path: Path) -> dict[str, str]:
    """One SCRAM password per principal of the access map, generated once into the data
    directory (mode 0600) and reused by every later `starling up`; never printed."""
    from starling.access import PRINCIPALS

    file = path / KAFKA_USERS_FILE
    passwords: dict[str, str] = {}
    if file.exists():
        try:
            loaded = json.loads(file.read_text())
            passwords = {str(k): str(v) for k, v in loaded.items()}
        except (OSError, ValueError, AttributeError):
            raise StackError(
                f"{file} is not a JSON map of user to password; delete it (new passwords are"
                " generated) or pass --fresh"
            ) from None
    missing = [p.name for p in PRINCIPALS if p.name not in passwords]
    if missing or not file.exists():
        passwords.update({name: secrets.token_urlsafe(24) for name in missing})
        temporary = file.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(passwords, indent=2) + "\n")
        temporary.replace(file)
    return passwords


def check_port_free(port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(
                f"port {port} on 127.0.0.1 is already taken (is another `starling up`"
                f" running?); pass another {option}, or 0 to pick a free one"
            ) from None


# ---- state shared with `starling down` / `starling status` --------------------------------


@dataclass
class Component:
    name: str
    kind: str  # kafka, store, http, service, airflow, loadgen
    address: str
    health_url: str | None
    log: str
    pids: list[int] = field(default_factory=list)


@dataclass
class StackState:
    pid: int
    data_dir: str
    # PLAINTEXT: the harness's own admin listener (status, Airflow); the components use
    # the SASL_SSL one, each as its own principal.
    bootstrap: str = ""
    sasl_bootstrap: str = ""
    store_url: str = ""
    gateway_url: str = ""
    identity_url: str = ""
    airflow_url: str = ""
    ready: bool = False
    components: list[Component] = field(default_factory=list)

    def save(self) -> None:
        target = Path(self.data_dir) / STATE_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(target)


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text())
        return state
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # A zombie (state Z) has exited; only its parent has not reaped it yet.
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _alive(state: dict[str, Any]) -> bool:
    return pid_alive(int(state.get("pid", 0)))


def probe(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


# ---- the stack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    airflow: bool = True
    rate: float = DEFAULT_RATE
    seed: int = 0
    users: int = DEFAULT_USERS
    replicas: int = 1
    gateway_port: int = 8080
    identity_port: int = 8081


class Stack:
    """What `starling up` started, so it can be watched and stopped in reverse order."""

    def __init__(self, options: UpOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.state = StackState(pid=os.getpid(), data_dir=str(options.data_dir))
        self._stoppers: list[tuple[str, Callable[[], None]]] = []
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._launched: dict[str, float] = {}
        self._airflow: Any = None
        self._kafka: Any = None
        self._redis: Any = None
        self._kafka_passwords: dict[str, str] = {}

    @property
    def logs(self) -> Path:
        return self.options.data_dir / "logs"

    # ---- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything in dependency order; on any failure the caller calls `stop()`."""
        opts = self.options
        started = time.monotonic()
        self.state.save()
        self._start_kafka()
        self._start_store()
        seed = ensure_seed(opts.data_dir)
        base = self._base_env()
        # Both ports before either starts: the identity service admits the page's origin
        # (the gateway's) and the gateway tells the page where to sign in.
        spare = iter(_process.free_ports(2))
        identity_port = opts.identity_port or next(spare)
        gateway_port = opts.gateway_port or next(spare)
        self.state.identity_url = f"http://127.0.0.1:{identity_port}"
        self.state.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self._start_python(
            "identity",
            "identity",
            address=self.state.identity_url,
            env={
                **base,
                "STARLING_IDENTITY_HTTP_HOST": "127.0.0.1",
                "STARLING_IDENTITY_HTTP_PORT": str(identity_port),
                "STARLING_IDENTITY_ISSUER": self.state.identity_url,
                "STARLING_IDENTITY_AUDIENCE": AUDIENCE,
                "STARLING_IDENTITY_SEED_FILE": str(seed),
                "STARLING_IDENTITY_DEV_MODE": "true",
                "STARLING_IDENTITY_DEMO_USERS": str(opts.users),
                "STARLING_IDENTITY_ALLOWED_ORIGINS": self.state.gateway_url,
            },
        )
        self._start_python(
            "gateway",
            "gateway",
            address=self.state.gateway_url,
            env={
                **base,
                "STARLING_GATEWAY_HTTP_HOST": "127.0.0.1",
                "STARLING_GATEWAY_HTTP_PORT": str(gateway_port),
                "STARLING_GATEWAY_ISSUER": self.state.identity_url,
                "STARLING_GATEWAY_AUDIENCE": AUDIENCE,
                "STARLING_GATEWAY_REVOCATION": "store",
                "STARLING_GATEWAY_IDENTITY_URL": self.state.identity_url,
            },
        )
        for service in STREAM_SERVICES:
            for replica in range(1, opts.replicas + 1):
                name = service if opts.replicas == 1 else f"{service}-{replica}"
                self._start_python(name, service, address="", env=dict(base), wait=False)
        # Launched together, waited for together: each spends seconds importing.
        for component in self.state.components:
            if component.kind == "service":
                self._wait_ready(component, self._processes[component.name])
        if opts.airflow:
            self._start_airflow()
        self._start_loadgen()
        self.state.ready = True
        self.state.save()
        self.say(f"[up] all components running after {time.monotonic() - started:.1f} s")

    def _start_kafka(self) -> None:
        from starling.harness.kafka import KafkaCluster
        from starling.topics import CATALOG

        directory = self.options.data_dir / "kafka"
        resuming = (directory / "node-0" / "data" / "meta.properties").is_file()
        self.say(f"[up] {'resuming' if resuming else 'starting'} Kafka (1 KRaft node) ...")
        cluster = KafkaCluster.start(
            nodes=1,
            progress=lambda line: self.say(f"[kafka] {line}"),
            directory=directory,
            # Least privilege as in the cluster: each principal gets only the access map's
            # ACLs on the SASL_SSL listener (PLAINTEXT, the harness's own, is a super user).
            authorizer=True,
        )
        self._kafka = cluster
        self._stoppers.append(("kafka", cluster.stop))
        specs = list(CATALOG.for_cluster(1).all_topics())
        # Only the missing ones: kept topics keep their messages and their configuration.
        existing = cluster.topic_names()
        missing = [spec for spec in specs if spec.name not in existing]
        cluster.create_topics(
            [(spec.name, spec.partitions, spec.replicas, spec.kafka_config()) for spec in missing]
        )
        self.state.bootstrap = cluster.bootstrap_servers
        self.state.sasl_bootstrap = cluster.sasl_ssl_bootstrap_servers
        self._add_principals(cluster)
        node = cluster.nodes[0]
        self.state.components.append(
            Component(
                name="kafka",
                kind="kafka",
                address=cluster.bootstrap_servers,
                health_url=None,
                log=str(node.server_log),
                pids=[node.pid] if node.pid else [],
            )
        )
        self.state.save()
        self.say(
            f"[up] Kafka ready at {cluster.bootstrap_servers}; {len(missing)} topics created,"
            f" {len(specs) - len(missing)} kept"
        )

    def _add_principals(self, cluster: Any) -> None:
        """A SCRAM-SHA-512 user per principal of the access map, and with the authorizer
        its least-privilege ACLs, as the cluster's KafkaUsers have them."""
        from starling.access import PRINCIPALS

        self._kafka_passwords = ensure_kafka_passwords(self.options.data_dir)
        for principal in PRINCIPALS:
            cluster.add_scram_user(principal.name, self._kafka_passwords[principal.name])
        if cluster.authorizer:
            grant_access_map(cluster)
        self.say(
            f"[up] Kafka users: {', '.join(p.name for p in PRINCIPALS)} (SCRAM-SHA-512 on"
            f" {cluster.sasl_ssl_bootstrap_servers}; ACLs"
            f" {'from the access map' if cluster.authorizer else 'off'})"
        )

    def _kafka_env(self, principal: str) -> dict[str, str]:
        """What points a component at the SASL_SSL listener as `principal`."""
        assert self._kafka is not None
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.state.sasl_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": principal,
            "KAFKA_SASL_PASSWORD": self._kafka_passwords[principal],
            "KAFKA_SSL_CA_LOCATION": str(self._kafka.ca_location),
        }

    def _start_store(self) -> None:
        from starling.harness.redis import RedisServer

        self.say("[up] starting the store (redis-server) ...")
        server = RedisServer.start(appendonly=True, directory=self.options.data_dir / "store")
        self._redis = server
        self._stoppers.append(("store", server.stop))
        self.state.store_url = server.url
        self.state.components.append(
            Component(
                name="store",
                kind="store",
                address=server.url,
                health_url=None,
                log=str(server.log_file),
                pids=[server.pid] if server.pid else [],
            )
        )
        self.state.save()
        self.say(f"[up] store ready at {server.url}")

    def _base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_INHERITED_PREFIXES) and k not in _INHERITED_NAMES
        }
        assert self._redis is not None
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.state.bootstrap,
            STORE_HOST=self._redis.host,
            STORE_PORT=str(self._redis.port),
            STARLING_SHUTDOWN_TIMEOUT_S=str(SERVICE_SHUTDOWN_S),
            PYTHONUNBUFFERED="1",
        )
        return env

    def _start_python(
        self, name: str, service: str, *, address: str, env: dict[str, str], wait: bool = True
    ) -> None:
        metrics_port = _process.free_ports(1)[0]
        env["METRICS_PORT"] = str(metrics_port)
        # The principal is the service: its consumer group and ACLs are named after it.
        env.update(self._kafka_env(service))
        log = self.logs / f"{name}.log"
        self.say(f"[up] starting {name} (metrics on :{metrics_port}) ...")
        process = _process.start_session_process(
            [sys.executable, "-m", "starling.run_cli", service],
            cwd=self.options.data_dir,
            output=log,
            env=env,
        )
        self._processes[name] = process
        self._launched[name] = time.monotonic()
        component = Component(
            name=name,
            kind="http" if service in ("gateway", "identity") else "service",
            address=address or f"metrics :{metrics_port}",
            health_url=f"http://127.0.0.1:{metrics_port}/readyz",
            log=str(log),
            pids=[process.pid],
        )
        self.state.components.append(component)
        self.state.save()
        if wait:
            self._wait_ready(component, process)

    def _wait_ready(self, component: Component, process: subprocess.Popen[bytes]) -> None:
        assert component.health_url is not None
        started = time.monotonic()
        launched = self._launched[component.name]
        while not probe(component.health_url, timeout=1.0):
            code = process.poll()
            if code is not None:
                raise StackError(crash_report(component.name, code, Path(component.log)))
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise StackError(
                    f"{component.name} not ready within {READY_TIMEOUT_S:.0f} s"
                    f" (see {component.log})\n{_process.tail(Path(component.log), 20)}"
                )
            time.sleep(0.2)
        self.say(f"[up] {component.name} ready, {time.monotonic() - launched:.1f} s after launch")

    def _start_airflow(self) -> None:
        from starling.harness.airflow import AirflowStack, connections_env, default_dags_folder

        self.say("[up] starting Airflow (api-server, scheduler, dag-processor, triggerer) ...")
        stack = AirflowStack.start(
            dags_folder=default_dags_folder(),
            # As in the cluster: the `airflow` principal over SCRAM, held to its ACLs.
            env=connections_env(
                self.state.sasl_bootstrap,
                self.state.store_url,
                **{
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": "airflow",
                    "sasl.password": self._kafka_passwords["airflow"],
                    "ssl.ca.location": str(self._kafka.ca_location),
                },
            ),
            ready_timeout=300.0,
            progress=self.say,
            home=self.options.data_dir / "airflow",
        )
        self._airflow = stack
        self._stoppers.append(("airflow", stack.stop))
        self.state.airflow_url = stack.api_url
        for name, process in stack._processes.items():
            self.state.components.append(
                Component(
                    name=f"airflow {name}",
                    kind="airflow",
                    address=stack.api_url if name == "api-server" else "",
                    health_url=f"{stack.api_url}/api/v2/monitor/health",
                    log=str(stack.log_file(name)),
                    pids=[process.pid],
                )
            )
        self.state.save()

    def _start_loadgen(self) -> None:
        opts = self.options
        log = self.logs / "loadgen.log"
        self.say(f"[up] starting the traffic generator ({opts.rate:g} events/s, seed {opts.seed})")
        process = _process.start_session_process(
            [
                sys.executable,
                "-m",
                "starling.loadgen.cli",
                "--bootstrap-servers",
                self.state.sasl_bootstrap,
                "--security-protocol",
                "SASL_SSL",
                "--sasl-username",
                "loadgen",
                "--ssl-ca-location",
                str(self._kafka.ca_location),
                "--rate",
                f"{opts.rate:g}",
                "--seed",
                str(opts.seed),
                "--users",
                str(opts.users),
                # The users' handles and follow graph into the store first: mentions
                # notify and tweets fan out to followers' timelines.
                "--store-url",
                self.state.store_url,
                "--quiet",
            ],
            cwd=opts.data_dir,
            output=log,
            # The password by environment: argv is visible to every user.
            env={
                **self._base_env(),
                "STARLING_KAFKA_SASL_PASSWORD": self._kafka_passwords["loadgen"],
            },
        )
        self._processes["loadgen"] = process
        self.state.components.append(
            Component(
                name="loadgen",
                kind="loadgen",
                address=f"{opts.rate:g} events/s",
                health_url=None,
                log=str(log),
                pids=[process.pid],
            )
        )
        self.state.save()

    # ---- watch and stop ----------------------------------------------------------------

    def dead_component(self) -> str | None:
        """A crash report for the first component that exited, or None while all run."""
        for name, process in self._processes.items():
            code = process.poll()
            if code is not None:
                return crash_report(name, code, self.logs / f"{name}.log")
        if self._kafka is not None:
            node = self._kafka.nodes[0]
            if not node.is_running:
                return crash_report("kafka", node.exit_code(), node.server_log)
        if self._redis is not None and not self._redis.is_running:
            return crash_report("store", None, self._redis.log_file)
        if self._airflow is not None:
            problem: str | None = self._airflow.exited_component(lines=15)
            if problem:
                return f"airflow: {problem}"
        return None

    def stop(self) -> None:
        """Everything, in reverse order of start: generator, Airflow, services, gateway,
        identity, store, Kafka. The Python processes are stopped together (each has a
        deadline of SERVICE_SHUTDOWN_S), then the harness servers."""
        self.say("[down] stopping ...")
        python = [p for p in reversed(list(self._processes.items()))]
        loadgen = self._processes.get("loadgen")
        if loadgen is not None:
            _process.stop_processes([loadgen], timeout=5.0, warn_on_kill=False)
        if self._airflow is not None:
            # The harness grants each component 30 s to stop gracefully; here a few seconds
            # do (a task cut short is retried by the next run), then the harness cleans up.
            _process.stop_processes(
                self._airflow._processes.values(), timeout=5.0, warn_on_kill=False
            )
        for name, stopper in reversed(self._stoppers):
            if name == "airflow":
                with _reported(self.say, name):
                    stopper()
        _process.stop_processes(
            [p for n, p in python if n != "loadgen"],
            timeout=SERVICE_SHUTDOWN_S + 3.0,
            warn_on_kill=False,
        )
        for name, stopper in reversed(self._stoppers):
            if name != "airflow":
                with _reported(self.say, name):
                    stopper()
        self.state.ready = False
        with contextlib.suppress(OSError):
            (self.options.data_dir / STATE_FILE).unlink()
        self.say("[down] stopped")


def grant_access_map(cluster: Any, timeout: float = 30.0) -> None:
    """The access map's ACLs (`Principal.acl_rules`) on the cluster, for each principal."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # no __all__
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    from starling.access import PRINCIPALS, PatternType

    bindings = [
        AclBinding(
            ResourceType.TOPIC if rule.resource_type == "topic" else ResourceType.GROUP,
            rule.resource_name,
            ResourcePatternType.PREFIXED
            if rule.pattern == PatternType.PREFIX
            else ResourcePatternType.LITERAL,
            f"User:{principal.name}",
            "*",
            AclOperation[operation.name],
            AclPermissionType.ALLOW,
        )
        for principal in PRINCIPALS
        for rule in principal.acl_rules()
        for operation in rule.operations
    ]
    admin = cluster.admin()
    for future in admin.create_acls(bindings).values():
        future.result(timeout=timeout)


@contextlib.contextmanager
def _reported(say: Callable[[str], None], name: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # keep stopping the rest
        say(f"[down] stopping {name} failed: {error}")


def crash_report(name: str, code: int | None, log: Path, lines: int = 20) -> str:
    exit_text = f"exited with code {code}" if code is not None else "exited"
    return f"{name} {exit_text}; see {log} (last {lines} lines below)\n{_process.tail(log, lines)}"


def request_down(data_dir: Path, timeout: float = 60.0) -> str:
    """`starling down`: SIGTERM the `starling up` of `data_dir` and wait for it (and every
    process it recorded) to be gone; kill leftovers whose parent was SIGKILLed."""
    state = read_state(data_dir)
    if state is None:
        return f"no stack recorded in {data_dir}; nothing to stop"
    pid = int(state.get("pid", 0))
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        raise StackError(f"`starling up` (pid {pid}) still running after {timeout:.0f} s")
    leftovers = [
        child
        for component in state.get("components", [])
        for child in component.get("pids", [])
        if pid_alive(int(child))
    ]
    for child in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(child), signal.SIGKILL)
    with contextlib.suppress(OSError):
        (data_dir / STATE_FILE).unlink()
    return f"stopped the stack of {data_dir}" + (
        f" (killed {len(leftovers)} leftover process(es))" if leftovers else ""
    )
