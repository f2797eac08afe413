"""A real Kubernetes control plane without nodes: etcd, kube-apiserver, kube-controller-manager.

Usage::

    with ControlPlane.start() as cluster:        # Strimzi CRDs installed, /readyz ok
        api = cluster.api()
        api.get("/api/v1/namespaces/default")
        print(cluster.kubeconfig)                  # for the Pulumi provider, kubectl, ...

The binaries are built from Go modules by `starling.toolchain` (cached after the first
build). Everything binds to 127.0.0.1 on free ports and lives in one temporary directory
that is removed on `stop()`; the harness watchdog kills the processes and removes the
directory even if Python dies without cleaning up.

What it is and is not: the API server admits, validates (OpenAPI schemas of built-in
types and CRDs, admission including Pod Security) and stores objects; the controller
manager runs the controllers that need no node (garbage collection, namespace deletion,
ReplicaSets, service-account tokens). There is no kubelet and no scheduler: pods are
created but never run, so nothing ever becomes Ready.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

# PyYAML is in the dev group (the harness is a development tool); no type stubs for it.
import yaml

from starling.harness import _process
from starling.harness.tls import write_tls_files

Progress = Callable[[str], None]

ADMIN_USER = "starling-admin"
# system:masters bypasses RBAC authorization; RBAC itself stays on for everyone else.
ADMIN_GROUP = "system:masters"
KUBECONFIG_CONTEXT = "starling-controlplane"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
STRIMZI_CRDS_RELATIVE = Path("../shared/strimzi-crds/1.2.0")
# services/starling/harness/controlplane.py -> the repository root (a source checkout).
_REPO_ROOT = Path(__file__).resolve().parents[3]
# A cold apiserver needs ~10-20 s on 2 cores (it bootstraps RBAC roles and priority
# levels); CI machines shared with other jobs can take several times longer.
DEFAULT_READY_TIMEOUT = 180.0
_STOP_TIMEOUT = 15.0
# Annotation touched on a terminating CRD to requeue its finalizer (see remove_crds).
_NUDGE = "starling.invalid/requeue"


class ControlPlaneError(RuntimeError):
    """A control-plane component could not be built, did not start, or refused a request."""


def default_strimzi_crds_dir() -> Path:
    """`../shared/strimzi-crds/1.2.0` next to the repository (shared/ in this workplace)."""
    return (_REPO_ROOT / STRIMZI_CRDS_RELATIVE).resolve()


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None

    @classmethod
    def ensure(cls, *, controller_manager: bool, progress: Progress | None = None) -> Binaries:
        """The pinned binaries, built from Go modules on a cache miss (minutes, cold)."""
        from starling.toolchain import ToolBuildError, ensure_tool

        try:
            return cls(
                etcd=ensure_tool("etcd", progress=progress),
                kube_apiserver=ensure_tool("kube-apiserver", progress=progress),
                kube_controller_manager=(
                    ensure_tool("kube-controller-manager", progress=progress)
                    if controller_manager
                    else None
                ),
            )
        except ToolBuildError as error:
            raise ControlPlaneError(f"cannot build the control-plane binaries: {error}") from error


class KubeApiError(ControlPlaneError):
    """The API server answered a request with an error status."""

    def __init__(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        # A Status object's message is what kubectl would print (e.g. CRD validation).
        self.reason = str(body.get("message") or body)
        super().__init__(f"{method} {path} -> {status}: {self.reason}")


class KubeApi:
    """A minimal JSON client for the API server with the admin token (no kubernetes
    client library needed): enough to install CRDs and to read back what Pulumi made."""

    def __init__(self, server: str, token: str, ca_file: Path) -> None:
        self._client = httpx.Client(
            base_url=server,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            verify=ssl.create_default_context(cafile=str(ca_file)),
            timeout=30.0,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self._client.request(method, path, json=body)

    def get(self, path: str) -> dict[str, Any]:
        return self._checked("GET", path)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        response = self.request("GET", path)
        if response.status_code == 404:
            return None
        return self._decode("GET", path, response)

    def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(path).get("items", [])
        return items

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._checked("POST", path, body)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        response = self._client.request(
            "PATCH",
            path,
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        return self._decode("PATCH", path, response)

    def delete(self, path: str) -> dict[str, Any] | None:
        response = self.request("DELETE", path)
        if response.status_code == 404:
            return None
        return self._decode("DELETE", path, response)

    def _checked(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        return self._decode(method, path, self.request(method, path, body))

    @staticmethod
    def _decode(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            decoded: dict[str, Any] = response.json()
        except ValueError:
            decoded = {"message": response.text}
        if response.status_code >= 400:
            raise KubeApiError(method, path, response.status_code, decoded)
        return decoded


_live_planes: _process.StopAtExit[ControlPlane] = _process.StopAtExit()


class ControlPlane(_process.StopsOnExit):
    """etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1, admin by token."""

    host = "127.0.0.1"

    def __init__(self, binaries: Binaries, directory: Path, progress: Progress) -> None:
        self.binaries = binaries
        self.directory = directory
        self._progress = progress
        etcd_client, etcd_peer, apiserver, controller_manager = _process.free_ports(4)
        self.etcd_client_port = etcd_client
        self.etcd_peer_port = etcd_peer
        self.apiserver_port = apiserver
        self.controller_manager_port = controller_manager
        self.token = secrets.token_urlsafe(32)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped = False

    # --- life cycle -------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        strimzi_crds: Path | None = None,
        install_strimzi_crds: bool = True,
        controller_manager: bool = True,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        progress: Progress | None = None,
    ) -> ControlPlane:
        """Build (if needed) and start the control plane; return once /readyz says ok and,
        unless told not to, the Strimzi CRDs (default: `default_strimzi_crds_dir()`) are
        Established."""
        report = progress or (lambda line: None)
        crds = strimzi_crds or default_strimzi_crds_dir()
        if install_strimzi_crds and not any(crds.glob("*.yaml")):
            # Checked before minutes of building: the CRDs are data this repo does not carry.
            raise ControlPlaneError(
                f"no Strimzi CRDs (*.yaml) in {crds}; the control plane installs them from "
                f"{STRIMZI_CRDS_RELATIVE} relative to the repository root (shared/ data)"
            )
        binaries = Binaries.ensure(controller_manager=controller_manager, progress=progress)
        directory = Path(tempfile.mkdtemp(prefix="starling-controlplane-"))
        _process.reaper.watch_directory(directory)
        plane = cls(binaries, directory, report)
        _live_planes.add(plane)
        try:
            plane._launch(ready_timeout, controller_manager)
            if install_strimzi_crds:
                plane.install_crds(crds, timeout=ready_timeout)
        except BaseException:
            plane.stop()
            raise
        return plane

    def stop(self) -> None:
        """Stop every component (controller manager first, etcd last); delete the data."""
        if self._stopped:
            return
        self._stopped = True
        try:
            for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
                process = self._processes.pop(name, None)
                if process is not None:
                    _process.stop_process(process, timeout=_STOP_TIMEOUT)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            _process.reaper.forget_directory(self.directory)
            _live_planes.discard(self)

    # --- what clients need --------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "pki" / "ca.pem"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def log_file(self, component: str) -> Path:
        return self.directory / "logs" / f"{component}.log"

    def api(self) -> KubeApi:
        """A new admin client; close it (or use it as a context manager) when done."""
        return KubeApi(self.server, self.token, self.ca_file)

    def logs_tail(self, lines: int = 30) -> str:
        """The last lines of every component's log, for failure messages."""
        parts = []
        for component in ("etcd", "kube-apiserver", "kube-controller-manager"):
            path = self.log_file(component)
            if path.exists():
                parts.append(f"--- {path} ---\n{_process.tail(path, lines)}")
        return "\n".join(parts)

    def exited_component(self) -> str | None:
        """A message naming the first component that is no longer running, else None."""
        for component, process in self._processes.items():
            code = process.poll()
            if code is not None:
                return f"{component} exited with code {code}; see {self.log_file(component)}"
        return None

    def install_crds(self, directory: Path, *, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Create each CRD in `directory/*.yaml` that does not exist yet; wait until all of
        them are Established (served). Idempotent: a later test may call it again after a
        `pulumi destroy` removed them."""
        documents = _crd_documents(directory)
        names = [str(document["metadata"]["name"]) for document in documents]
        collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        with self.api() as api:
            for name, document in zip(names, documents, strict=True):
                if api.get_or_none(f"{collection}/{name}") is None:
                    api.create(collection, document)
            deadline = time.monotonic() + timeout
            for name in names:
                self._wait_established(api, name, deadline)
        self._progress(f"[controlplane] {len(names)} CRDs established from {directory}")

    def remove_crds(self, directory: Path, *, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Delete the CRDs defined in `directory/*.yaml` (and so every custom resource of
        theirs) and wait until they are gone: for a test in which something else, such as
        the Pulumi program, must create them itself."""
        collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        names = _crd_names(directory)
        with self.api() as api:
            for name in names:
                api.delete(f"{collection}/{name}")
            deadline = time.monotonic() + timeout
            remaining = list(names)
            while remaining:
                remaining = [n for n in remaining if api.get_or_none(f"{collection}/{n}")]
                if not remaining:
                    break
                if time.monotonic() >= deadline:
                    raise ControlPlaneError(
                        f"CRDs {remaining} still exist {timeout:.0f} s after delete"
                    )
                time.sleep(2.0)
                # A CRD deleted seconds after it was created can find its instances'
                # storage still initializing: the apiserver's CRD finalizer then fails
                # ("storage is (re)initializing") and retries with exponential backoff,
                # minutes apart. Any update of the CRD requeues it at once.
                for name in remaining:
                    with contextlib.suppress(KubeApiError):
                        api.merge_patch(
                            f"{collection}/{name}",
                            {"metadata": {"annotations": {_NUDGE: str(time.monotonic())}}},
                        )
        self._progress(f"[controlplane] {len(names)} CRDs removed ({directory})")

    # --- internals ----------------------------------------------------------------------

    def _launch(self, ready_timeout: float, controller_manager: bool) -> None:
        started = time.monotonic()
        self._write_credentials()
        deadline = time.monotonic() + ready_timeout
        self._spawn("etcd", self._etcd_command())
        self._wait_until("etcd", deadline, self._etcd_healthy)
        self._spawn("kube-apiserver", self._apiserver_command())
        self._wait_until("kube-apiserver", deadline, self._apiserver_ready)
        if controller_manager:
            self._spawn("kube-controller-manager", self._controller_manager_command())
            self._wait_until("kube-controller-manager", deadline, self._controller_manager_healthy)
        self._progress(
            f"[controlplane] ready in {time.monotonic() - started:.1f} s at {self.server} "
            f"(kubeconfig {self.kubeconfig})"
        )

    def _write_credentials(self) -> None:
        pki = self.directory / "pki"
        # Serving certificate for 127.0.0.1/localhost plus the in-cluster names, so a
        # client that dials `kubernetes.default.svc` (none here, but the controller
        # manager's root CA is handed to service accounts) would verify it too.
        tls = write_tls_files(
            pki,
            host_names=("localhost", "kubernetes", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1",),
        )
        assert tls.ca_pem == self.ca_file
        # The same PEM holds key and chain; Go's key-pair loader skips the other blocks.
        self._serving_pem = tls.server_pem
        self._write_service_account_keys(pki / "service-account.key", pki / "service-account.pub")
        # Static token file: token,user,uid,"groups" (the admin for tests and the
        # controller manager, which here runs with admin rights instead of per-controller
        # service accounts: fewer moving parts, same controllers).
        tokens = self.directory / "tokens.csv"
        tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"\n')
        tokens.chmod(0o600)
        # JSON is valid YAML, and every kubeconfig reader accepts it.
        self.kubeconfig.write_text(json.dumps(self._kubeconfig_document(), indent=2))
        self.kubeconfig.chmod(0o600)

    @staticmethod
    def _write_service_account_keys(private: Path, public: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        # ES256 is an accepted signing algorithm for service-account tokens; EC keys are
        # generated instantly, unlike RSA.
        key = ec.generate_private_key(ec.SECP256R1())
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        private.chmod(0o600)
        # The verifier (--service-account-key-file) reads public keys only.
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _kubeconfig_document(self) -> dict[str, Any]:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": KUBECONFIG_CONTEXT,
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": KUBECONFIG_CONTEXT,
                    "context": {"cluster": KUBECONFIG_CONTEXT, "user": ADMIN_USER},
                }
            ],
            "current-context": KUBECONFIG_CONTEXT,
        }

    def _etcd_command(self) -> list[str]:
        client_url = f"http://{self.host}:{self.etcd_client_port}"
        peer_url = f"http://{self.host}:{self.etcd_peer_port}"
        return [
            str(self.binaries.etcd),
            "--name=starling",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=starling={peer_url}",
            # Throwaway data: fsync per write only slows a test cluster down.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_command(self) -> list[str]:
        pki = self.directory / "pki"
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://{self.host}:{self.etcd_client_port}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.directory / 'apiserver-certs'}",
            f"--tls-cert-file={self._serving_pem}",
            f"--tls-private-key-file={self._serving_pem}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={self.directory / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The `kubernetes` Service's endpoints would point at 127.0.0.1, which
            # Endpoints validation rejects; no pod runs here to use them anyway.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _controller_manager_command(self) -> list[str]:
        pki = self.directory / "pki"
        assert self.binaries.kube_controller_manager is not None
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            f"--bind-address={self.host}",
            f"--secure-port={self.controller_manager_port}",
            f"--cert-dir={self.directory / 'controller-manager-certs'}",
            "--leader-elect=false",
            # One admin identity for all controllers (see _write_credentials).
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={self.ca_file}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--profiling=false",
        ]

    def _spawn(self, component: str, command: list[str]) -> None:
        self._processes[component] = _process.start_session_process(
            command, cwd=self.directory, output=self.log_file(component)
        )

    def _wait_until(self, component: str, deadline: float, ready: Callable[[], bool]) -> None:
        process = self._processes[component]
        while not ready():
            code = process.poll()
            if code is not None or time.monotonic() >= deadline:
                reason = f"exited with code {code}" if code is not None else "was not ready in time"
                raise ControlPlaneError(
                    f"{component} {reason}\n"
                    f"--- {self.log_file(component)} ---\n"
                    f"{_process.tail(self.log_file(component), 40)}"
                )
            time.sleep(0.25)

    def _etcd_healthy(self) -> bool:
        try:
            response = httpx.get(f"http://{self.host}:{self.etcd_client_port}/health", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and '"health":"true"' in response.text.replace(" ", "")

    def _apiserver_ready(self) -> bool:
        try:
            with self.api() as api:
                response = api.request("GET", "/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text.strip() == "ok"

    def _controller_manager_healthy(self) -> bool:
        # /healthz is on the always-allowed paths; its certificate is self-signed by
        # the controller manager itself (in --cert-dir), hence no verification here.
        try:
            response = httpx.get(
                f"https://{self.host}:{self.controller_manager_port}/healthz",
                verify=False,
                timeout=2,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    @staticmethod
    def _wait_established(api: KubeApi, name: str, deadline: float) -> None:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        while True:
            crd = api.get(path)
            conditions = crd.get("status", {}).get("conditions", [])
            if any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            ):
                return
            if time.monotonic() >= deadline:
                raise ControlPlaneError(f"CRD {name} not Established in time: {conditions}")
            time.sleep(0.2)


def wait_for(
    check: Callable[[], bool], *, timeout: float, interval: float = 0.5, what: str
) -> None:
    """Poll `check` until it is true; ControlPlaneError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _crd_documents(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in `directory/*.yaml`, in file order."""
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document and document.get("kind") == "CustomResourceDefinition":
                documents.append(document)
    return documents


def _crd_names(directory: Path) -> list[str]:
    return [str(document["metadata"]["name"]) for document in _crd_documents(directory)]
