"""Issue 12 for Airflow and its metadata database: secrets as files, TLS to the database,
the headless governing Service, a CPU limit we mean, and a restricted Celery broker.

The Airflow chart archive cannot be pulled here, so the chart's side is checked on the
values the program hands to Helm, against what the chart 1.22 templates do with them (named
in each test). The Postgres side is the program's own objects, and one test runs a real
PostgreSQL with the program's certificate, key mode and pg_hba.conf.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from starling_infra import strimzi
from tests.pod_security import assert_restricted, pod_spec_of
from tests.unit.infra.harness import ProgramRun, Registered, run_program

pytestmark = pytest.mark.unit

AIRFLOW_NAMESPACE = "starling-airflow"
SECRETS_ROOT = "/var/run/secrets/starling"
# What the chart 1.22 renders as `valueFrom.secretKeyRef` in every Airflow container unless
# `enableBuiltInSecretEnvVars.<name>` is false (templates/_helpers.yaml,
# standard_airflow_environment). Listed here, not imported: the test must not trust the
# program's own list.
CHART_BUILT_IN_SECRET_ENV = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW_CONN_AIRFLOW_DB",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__WEBSERVER__SECRET_KEY",
    "AIRFLOW__CELERY__BROKER_URL",
)
# The Strimzi operator chart's `resources` default (values.yaml): what survives a Helm deep
# merge of any key we leave out.
STRIMZI_CHART_RESOURCES = {
    "limits": {"memory": "384Mi", "cpu": "1000m"},
    "requests": {"memory": "384Mi", "cpu": "200m"},
}


@pytest.fixture(scope="module")
def celery_run() -> ProgramRun:
    return run_program("dev", overrides={"starling:airflow.executor": "CeleryExecutor"})


@pytest.fixture(scope="module", params=["dev", "prod", "celery"])
def airflow_run(
    request: pytest.FixtureRequest,
    dev_run: ProgramRun,
    prod_run: ProgramRun,
    celery_run: ProgramRun,
) -> ProgramRun:
    runs = {"dev": dev_run, "prod": prod_run, "celery": celery_run}
    return runs[request.param]


def _values(run: ProgramRun) -> dict[str, Any]:
    values: dict[str, Any] = run.named("airflow-release").inputs["values"]
    return values


def _secret_strings(run: ProgramRun) -> set[str]:
    """Every secret value the render holds (and parts long enough to be recognisable)."""
    found: set[str] = set()
    for secret in run.of_kind("Secret"):
        for value in (secret.inputs.get("stringData") or {}).values():
            if isinstance(value, str) and len(value) >= 16:
                found.add(value)
    return found


def _containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _keys(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, Mapping):
        for name, value in node.items():
            if name == key:
                yield value
            yield from _keys(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item, key)


def _airflow_objects(run: ProgramRun) -> list[Registered]:
    return [
        r
        for r in run.kubernetes_objects()
        if (r.inputs.get("metadata") or {}).get("namespace") == AIRFLOW_NAMESPACE
    ]


def _secret(run: ProgramRun, name: str) -> dict[str, str]:
    (secret,) = [s for s in run.of_kind("Secret") if s.inputs["metadata"]["name"] == name]
    encoded = secret.inputs.get("data") or {}
    data: dict[str, str] = {k: base64.b64decode(v).decode() for k, v in encoded.items()}
    return data | (secret.inputs.get("stringData") or {})


def _config_map(run: ProgramRun, name: str) -> dict[str, str]:
    (found,) = [c for c in run.of_kind("ConfigMap") if c.inputs["metadata"]["name"] == name]
    data: dict[str, str] = found.inputs["data"]
    return data


def _database_pod(run: ProgramRun) -> Mapping[str, Any]:
    spec = pod_spec_of(run.named("airflow-db-statefulset").manifest())
    assert spec
    return spec


# --- defect 4: no secret in any container's environment -------------------------------------


def test_no_airflow_or_postgres_container_has_a_secret_in_its_env(airflow_run: ProgramRun) -> None:
    secrets = _secret_strings(airflow_run)
    assert secrets
    objects = _airflow_objects(airflow_run)
    assert any(r.kind == "StatefulSet" for r in objects)
    for resource in objects:
        spec = pod_spec_of(resource.manifest())
        for container in _containers(spec or {}):
            for entry in container.get("env") or []:
                where = f"{resource.kind} {resource.name} container {container['name']}"
                assert "valueFrom" not in entry, f"{where}: {entry['name']} uses valueFrom"
                assert not any(s in str(entry.get("value", "")) for s in secrets), where
            assert not container.get("envFrom"), resource.name


def test_the_airflow_chart_renders_no_secret_env(airflow_run: ProgramRun) -> None:
    """What the chart turns into env: its built-in secret variables (each a secretKeyRef
    unless switched off), `secret:` (each a secretKeyRef), `env:` (plain values), and any
    `extraEnv`/`extraEnvFrom` or container our values define."""
    values = _values(airflow_run)
    switches = values.get("enableBuiltInSecretEnvVars") or {}
    left_on = [name for name in CHART_BUILT_IN_SECRET_ENV if switches.get(name) is not False]
    assert not left_on, f"chart secret env vars still on: {left_on}"
    assert not values.get("secret")
    assert not values.get("extraEnv")
    assert not values.get("extraEnvFrom")
    assert not list(_keys(values, "secretKeyRef"))
    assert not list(_keys(values, "envFrom"))
    secrets = _secret_strings(airflow_run)
    for entry in values["env"]:
        assert set(entry) == {"name", "value"}
        assert not any(s in entry["value"] for s in secrets), entry["name"]
    assert not any(s in json.dumps(values) for s in secrets)


def test_every_secret_mount_is_read_only_and_not_world_readable(airflow_run: ProgramRun) -> None:
    values = _values(airflow_run)
    volumes = {v["name"]: v for v in values["volumes"]}
    for mount in values["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            assert mount["readOnly"] is True
            assert volume["secret"]["defaultMode"] & 0o007 == 0, mount["name"]
    database = _database_pod(airflow_run)
    db_volumes = {v["name"]: v for v in database["volumes"]}
    (container,) = database["containers"]
    for mount in container["volumeMounts"]:
        if "secret" in db_volumes.get(mount["name"], {}):  # `data` may be a claim template
            assert mount["readOnly"] is True
            assert mount["mountPath"].startswith(SECRETS_ROOT + "/")
            assert db_volumes[mount["name"]]["secret"]["defaultMode"] & 0o027 == 0


def _file_tree(run: ProgramRun, root: Path) -> dict[str, str]:
    """Write each Airflow secret volume's files under `root` as the kubelet would mount
    them; return the env with paths rewritten to `root`."""
    values = _values(run)
    volumes = {v["name"]: v for v in values["volumes"]}
    for mount in values["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            data = _secret(run, volume["secret"]["secretName"])
        elif "configMap" in volume:
            data = _config_map(run, volume["configMap"]["name"])
        else:
            continue
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        source = volume.get("secret") or volume.get("configMap") or {}
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            (target / item["path"]).write_text(data[item["key"]])
    return {e["name"]: e["value"].replace("/var/", f"{root}/var/") for e in values["env"]}


def test_real_airflow_reads_every_secret_from_the_mounted_files(
    airflow_run: ProgramRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's own config parser and LocalFilesystemBackend, given only the env and the
    files the pods get, find the database connections, keys and connections."""
    from airflow.configuration import conf
    from airflow.secrets.local_filesystem import LocalFilesystemBackend

    env = _file_tree(airflow_run, tmp_path)
    for name in [n for n in os.environ if n.startswith("AIRFLOW__")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    database = _secret(airflow_run, "starling-airflow-db")
    keys = _secret(airflow_run, "starling-airflow-keys")
    assert conf.get("database", "sql_alchemy_conn") == database["connection"]
    assert conf.get("database", "sql_alchemy_conn_async") == database["connection-async"]
    assert conf.get("core", "fernet_key") == keys["fernet-key"]
    assert conf.get("api", "secret_key") == keys["api-secret-key"]
    assert conf.get("api_auth", "jwt_secret") == keys["jwt-secret"]
    assert Path(env["PGSSLROOTCERT"]).read_text().startswith("-----BEGIN CERTIFICATE-----")

    config = _values(airflow_run)["config"]["secrets"]
    assert config["backend"] == "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    kwargs = json.loads(config["backend_kwargs"])
    path = tmp_path / kwargs["connections_file_path"].lstrip("/")
    backend = LocalFilesystemBackend(connections_file_path=str(path))
    kafka = backend.get_connection("kafka_default")
    store = backend.get_connection("starling_store")
    assert kafka is not None and store is not None
    assert kafka.conn_type == "kafka"
    assert kafka.extra_dejson["security.protocol"] == "SASL_SSL"
    assert kafka.extra_dejson["enable.auto.commit"] is False
    assert store.conn_type == "redis"
    assert store.host and store.password
    # What the operators' store_client hands redis-py: TLS on, the mounted CA.
    assert store.extra_dejson["ssl"] is True
    ca_file = Path(store.extra_dejson["ssl_ca_certs"])
    assert (tmp_path / str(ca_file).lstrip("/")).read_text().startswith("-----BEGIN CERT")
    _verify_server(
        (tmp_path / str(ca_file).lstrip("/")).read_text(),
        _secret(airflow_run, "starling-valkey-tls")["tls.crt"],
        store.host,
    )


def test_celery_broker_url_is_a_file_too(celery_run: ProgramRun) -> None:
    values = _values(celery_run)
    broker = _secret(celery_run, "starling-airflow-broker")
    assert values["redis"]["passwordSecretName"] == "starling-airflow-broker"
    assert values["data"]["brokerUrlSecretName"] == "starling-airflow-broker"
    assert urllib.parse.urlsplit(broker["connection"]).password == broker["password"]
    env = {e["name"]: e["value"] for e in values["env"]}
    command = env["AIRFLOW__CELERY__BROKER_URL_CMD"].split()
    assert command[0] == "cat"
    mounts = {m["name"]: m["mountPath"] for m in values["volumeMounts"]}
    assert command[1] == f"{mounts['airflow-broker']}/connection"


# --- defect 5: the metadata database speaks TLS and Airflow verifies it ---------------------


def test_postgres_serves_tls_only_with_our_certificate(stack_run: ProgramRun) -> None:
    spec = _database_pod(stack_run)
    (container,) = spec["containers"]
    args = container["args"]
    settings = dict(a.split("=", 1) for a in args[2::2])
    assert args[0] == "postgres"
    assert settings["ssl"] == "on"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    cert_dir, cert_file = settings["ssl_cert_file"].rsplit("/", 1)
    key_dir, key_file = settings["ssl_key_file"].rsplit("/", 1)
    assert cert_dir == key_dir
    tls_volume = volumes[mounts[cert_dir]]["secret"]
    assert tls_volume["secretName"] == "starling-airflow-db-tls"
    assert {i["path"] for i in tls_volume["items"]} == {cert_file, key_file}
    # Secret files are root-owned: Postgres accepts a root-owned key only without group
    # write/exec and world access, and reads it through the pod's fsGroup (its own group).
    assert tls_volume["defaultMode"] & 0o037 == 0
    pod = spec["securityContext"]
    assert pod["fsGroup"] == pod["runAsGroup"]
    # pg_hba.conf: TCP logins only over TLS.
    hba_dir, hba_file = settings["hba_file"].rsplit("/", 1)
    hba_map = volumes[mounts[hba_dir]]["configMap"]["name"]
    hba = _config_map(stack_run, hba_map)[hba_file]
    lines = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert {line[0] for line in lines} == {"local", "hostssl"}
    assert all(line[-1] == "scram-sha-256" for line in lines if line[0] == "hostssl")
    # The password as a file the image reads at initdb.
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "POSTGRES_PASSWORD" not in env
    password_dir = env["POSTGRES_PASSWORD_FILE"].rsplit("/", 1)[0]
    assert volumes[mounts[password_dir]]["secret"]["secretName"] == "starling-airflow-db"


def _db_tls(run: ProgramRun) -> tuple[dict[str, str], str]:
    data = _secret(run, "starling-airflow-db-tls")
    (tls_secret,) = [
        s
        for s in run.of_kind("Secret")
        if s.inputs["metadata"]["name"] == "starling-airflow-db-tls"
    ]
    assert tls_secret.inputs["type"] == "kubernetes.io/tls"
    assert "stringData" in tls_secret.secret_paths
    connection = _secret(run, "starling-airflow-db")["connection"]
    host = urllib.parse.urlsplit(connection).hostname
    assert host
    return data, host


def test_airflow_verifies_the_database_chain_and_name(stack_run: ProgramRun) -> None:
    data, host = _db_tls(stack_run)
    database = _secret(stack_run, "starling-airflow-db")
    sync = urllib.parse.urlsplit(database["connection"])
    query = dict(urllib.parse.parse_qsl(sync.query))
    assert query["sslmode"] == "verify-full"
    async_query = dict(
        urllib.parse.parse_qsl(urllib.parse.urlsplit(database["connection-async"]).query)
    )
    assert async_query == {"ssl": "verify-full"}
    # The CA the connection names is the CA Airflow's pods mount, and it signed the server.
    values = _values(stack_run)
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["PGSSLROOTCERT"] == query["sslrootcert"]
    ca_dir, ca_file = query["sslrootcert"].rsplit("/", 1)
    (mount,) = [m for m in values["volumeMounts"] if m["mountPath"] == ca_dir]
    (volume,) = [v for v in values["volumes"] if v["name"] == mount["name"]]
    mounted_ca = _config_map(stack_run, volume["configMap"]["name"])[ca_file]
    assert mounted_ca == data["ca.crt"]
    ca = x509.load_pem_x509_certificate(mounted_ca.encode())
    server = x509.load_pem_x509_certificate(data["tls.crt"].encode())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert host in names.get_values_for_type(x509.DNSName)
    key = serialization.load_pem_private_key(data["tls.key"].encode(), password=None)
    assert key.public_key() == server.public_key()


def _verify_server(ca_pem: str, server_pem: str, host: str) -> None:
    """Chain and name, as a verifying client checks them."""
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    server = x509.load_pem_x509_certificate(server_pem.encode())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert host in names.get_values_for_type(x509.DNSName)


def test_no_sslmode_disable_anywhere(airflow_run: ProgramRun) -> None:
    everything = json.dumps([r.inputs for r in airflow_run.resources])
    assert "sslmode=disable" not in everything
    assert "sslmode" in everything


# --- defect 7 -------------------------------------------------------------------------------


def test_database_statefulset_is_governed_by_a_headless_service(stack_run: ProgramRun) -> None:
    for statefulset in [r for r in _airflow_objects(stack_run) if r.kind == "StatefulSet"]:
        spec = statefulset.inputs["spec"]
        (service,) = [
            s
            for s in stack_run.of_kind("Service")
            if s.inputs["metadata"]["name"] == spec["serviceName"]
            and s.inputs["metadata"]["namespace"] == AIRFLOW_NAMESPACE
        ]
        assert service.inputs["spec"]["clusterIP"] == "None"
        labels = spec["template"]["metadata"]["labels"]
        assert service.inputs["spec"]["selector"].items() <= labels.items()


def _helm_merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalesce of user values over chart defaults: maps merge key by key, a null
    deletes the chart's key, anything else replaces it."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_strimzi_operator_gets_exactly_the_resources_we_set() -> None:
    ours = strimzi.operator_values("starling")["resources"]
    assert isinstance(ours, dict)
    merged = _helm_merge({"resources": STRIMZI_CHART_RESOURCES}, {"resources": ours})
    assert merged["resources"] == {k: v for k, v in ours.items() if v is not None}
    for section in ("limits", "requests"):
        assert set(merged["resources"][section]) == {"cpu", "memory"}, section


def _chart_redis_statefulset(values: Mapping[str, Any]) -> dict[str, Any]:
    """The chart 1.22 Redis StatefulSet's pod, as templates/redis/redis-statefulset.yaml
    builds it: pod context from `redis.securityContexts.pod` (else `securityContext`, else
    `runAsUser: <redis.uid>`, 0 by default), container context from
    `redis.securityContexts.container` (else `securityContext`, else empty)."""
    redis = values["redis"]
    contexts = redis.get("securityContexts") or {}
    pod = contexts.get("pod") or redis.get("securityContext") or {"runAsUser": redis.get("uid", 0)}
    container = contexts.get("container") or redis.get("securityContext") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "starling-airflow-redis"},
        "spec": {
            "template": {
                "spec": {
                    "securityContext": pod,
                    "containers": [
                        {
                            "name": "redis",
                            "command": ["redis-server"],
                            "securityContext": container,
                        }
                    ],
                }
            }
        },
    }


def test_celery_redis_passes_restricted(celery_run: ProgramRun) -> None:
    values = _values(celery_run)
    assert values["executor"] == "CeleryExecutor"
    assert values["redis"]["enabled"] is True
    assert_restricted(_chart_redis_statefulset(values))


# --- a real PostgreSQL with the program's TLS material ----------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _lay_out_volumes(run: ProgramRun, root: Path, gid: int) -> dict[str, str]:
    """The TLS and hba files where the StatefulSet mounts them (under `root`), owned and
    moded as the kubelet leaves a Secret/ConfigMap volume: root, group = fsGroup, defaultMode.
    Returns the server settings with paths rewritten under `root`."""
    spec = _database_pod(run)
    (container,) = spec["containers"]
    settings = dict(a.split("=", 1) for a in container["args"][2::2])
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    data, _ = _db_tls(run)
    for path in (settings["ssl_cert_file"], settings["ssl_key_file"], settings["hba_file"]):
        directory, name = path.rsplit("/", 1)
        volume = volumes[mounts[directory]]
        target = root / directory.lstrip("/") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            target.write_text(data[name])
            mode = volume["secret"]["defaultMode"]
        else:
            target.write_text(_config_map(run, volume["configMap"]["name"])[name])
            mode = volume["configMap"]["defaultMode"]
        os.chown(target, 0, gid)
        target.chmod(mode)
    return {
        key: f"{root}{value}" if value.startswith("/") else value for key, value in settings.items()
    }


def _psql(dsn: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", dsn, "-Atc", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
        check=False,
    )


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """A directory the postgres user can reach (pytest's tmp_path sits under a 0700 one)."""
    directory = Path(tempfile.mkdtemp(prefix="starling-airflow-db-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.slow
def test_real_postgres_accepts_the_key_and_refuses_plain_text(
    dev_run: ProgramRun, postgres_dir: Path
) -> None:
    """PostgreSQL started with the StatefulSet's settings and the key as a Secret volume
    leaves it (root-owned, the pod's mode, group = postgres via fsGroup): it starts, answers
    verify-full for the name Airflow uses, and refuses a plain-text login."""
    postgres = shutil.which("postgres")
    if postgres is None or shutil.which("psql") is None or os.geteuid() != 0:
        pytest.skip("needs postgres, psql and root (to own the key as the kubelet does)")
    import pwd

    user = pwd.getpwnam("postgres")
    tmp_path = postgres_dir
    settings = _lay_out_volumes(dev_run, tmp_path / "root", user.pw_gid)
    (tmp_path / "root").chmod(0o755)
    data, host = _db_tls(dev_run)
    password = _secret(dev_run, "starling-airflow-db")["password"]
    data_dir, socket_dir, password_file = tmp_path / "data", tmp_path / "run", tmp_path / "pw"
    data_dir.mkdir()
    socket_dir.mkdir()
    password_file.write_text(password)
    for owned in (data_dir, socket_dir, password_file):
        os.chown(owned, user.pw_uid, user.pw_gid)
    as_postgres = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}"]
    subprocess.run(
        [*as_postgres, "--clear-groups", "initdb", "-D", str(data_dir), "-U", "airflow",
         f"--pwfile={password_file}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [*as_postgres, f"--groups={user.pw_gid}", postgres, "-D", str(data_dir),
         "-p", str(port), "-k", str(socket_dir), "-c", "listen_addresses=127.0.0.1",
         *[f"-c{key}={value}" for key, value in settings.items()]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(data["ca.crt"])
    base = f"hostaddr=127.0.0.1 port={port} user=airflow dbname=postgres"
    verify = f"sslmode=verify-full sslrootcert={ca_file}"
    try:
        deadline = time.monotonic() + 30
        verified = _psql(f"host={host} {base} {verify}", password)
        while verified.returncode != 0 and time.monotonic() < deadline:
            if server.poll() is not None:
                output = server.stdout.read().decode() if server.stdout else ""
                pytest.fail(f"postgres exited: {output[-2000:]}")
            time.sleep(0.3)
            verified = _psql(f"host={host} {base} {verify}", password)
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.strip() == "t"
        plain = _psql(f"host={host} {base} sslmode=disable", password)
        assert plain.returncode != 0
        assert "no encryption" in plain.stderr
        # A name the certificate was not issued for fails verify-full.
        wrong = _psql(f"host=localhost {base} {verify}", password)
        assert wrong.returncode != 0
        assert "does not match" in wrong.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_python_ssl_verifies_the_name_airflow_uses(stack_run: ProgramRun) -> None:
    """An in-memory TLS handshake: server with the Secret's cert and key, client with the
    mounted CA and the host name from Airflow's connection."""
    data, host = _db_tls(stack_run)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    directory = Path(os.environ.get("TMPDIR", "/tmp"))
    cert = directory / f"starling-db-{os.getpid()}.pem"
    cert.write_text(data["tls.crt"] + data["tls.key"])
    try:
        server_context.load_cert_chain(cert)
    finally:
        cert.unlink()
    client_context = ssl.create_default_context(cadata=data["ca.crt"])
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname=host)
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    client.do_handshake()
    assert client.version() in {"TLSv1.2", "TLSv1.3"}
