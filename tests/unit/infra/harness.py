"""Runs `infra/__main__.py` under Pulumi's mocks and records what it registered.

The real Pulumi SDK does everything except talk to an engine: `MockMonitor` answers the
resource RPCs, and this recording subclass keeps each request's type, name, parent,
dependencies and inputs (secrets unwrapped, with their paths noted) for the tests to inspect.
Config is fed the way the engine feeds it: every value a string, structured values as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import runpy
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

REPO_ROOT = Path(__file__).resolve().parents[3]
INFRA = REPO_ROOT / "infra"
MAIN = INFRA / "__main__.py"
CRD_DIR = REPO_ROOT.parent / "shared" / "strimzi-crds" / "1.2.0"
TEST_SEED = "0123456789abcdef" * 4
SEED_KEY = "starling:secretSeed"

if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))

# How the Python SDK marks a secret value on the wire (pulumi.runtime.rpc).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
FAKE_CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    custom: bool
    inputs: dict[str, Any]
    secret_paths: set[str] = field(default_factory=set)

    @property
    def kind(self) -> str:
        return str(self.inputs.get("kind", ""))

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object as the provider would send it (inputs minus Pulumi extras)."""
        return {key: value for key, value in self.inputs.items() if key != "compat"}


def _plain(value: Any, path: str, secrets: set[str]) -> Any:
    """Unwrap secrets (noting where they were) and turn the wire's 3.0 back into 3."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            secrets.add(path)
            return _plain(value["value"], path, secrets)
        return {key: _plain(item, f"{path}.{key}", secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, f"{path}[{index}]", secrets) for index, item in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []
        self.reads: list[tuple[str, str, str]] = []

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        if args.resource_id:
            self.reads.append((args.typ, args.name, args.resource_id))
            if args.typ == "kubernetes:core/v1:Secret":
                encoded = base64.b64encode(FAKE_CA_PEM.encode()).decode()
                return args.resource_id, {"data": {"ca.crt": encoded}}
            return args.resource_id, {}
        self.created.append((args.typ, args.name))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            secrets: set[str] = set()
            inputs = _plain(rpc.deserialize_properties(request.object), "", secrets)
            self.registered.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    custom=request.custom,
                    inputs=inputs,
                    secret_paths={path.lstrip(".") for path in secrets},
                )
            )
        return response


@dataclass
class ProgramRun:
    stack: str
    resources: list[Registered]
    reads: list[tuple[str, str, str]]
    exports: dict[str, Any]

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def of_kind(self, kind: str) -> list[Registered]:
        return [r for r in self.resources if r.custom and r.kind == kind]

    def named(self, name: str) -> Registered:
        (match,) = [r for r in self.resources if r.name == name]
        return match

    def by_urn(self, urn: str) -> Registered:
        (match,) = [r for r in self.resources if r.urn == urn]
        return match

    def kubernetes_objects(self) -> Iterator[Registered]:
        """Every custom resource that is a Kubernetes object (not a Helm release or group)."""
        for r in self.resources:
            if r.custom and "apiVersion" in r.inputs and "kind" in r.inputs:
                yield r


def engine_value(value: Any) -> str:
    """A stack-file value as the engine hands it to the program."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def stack_config(stack: str) -> dict[str, str]:
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {key: engine_value(value) for key, value in (document.get("config") or {}).items()}


def run_program(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    remove: tuple[str, ...] = (),
    seed: str | None = TEST_SEED,
    seed_is_secret: bool = True,
) -> ProgramRun:
    """Run the real program for `stack` (its committed config plus `overrides`)."""
    config = stack_config(stack)
    if seed is not None:
        config[SEED_KEY] = seed
    for key, value in (overrides or {}).items():
        config[key] = engine_value(value)
    for key in remove:
        config.pop(key, None)

    # Pulumi's mocks schedule on the thread's current event loop; a test that ran
    # `asyncio.run` before (the Airflow and control-plane tiers do) leaves none set.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="starling", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, [SEED_KEY] if seed_is_secret else [])

    exports: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    original_export = pulumi.export
    saved_env = os.environ.pop("PULUMI_CONFIG", None)

    def capture(name: str, value: Any) -> None:
        exports[name] = value

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(MAIN), run_name="__main__")
        return pulumi.Output.all(**exports).apply(resolved.update)

    pulumi.export = capture  # type: ignore[assignment]
    try:
        program()
    finally:
        pulumi.export = original_export  # type: ignore[assignment]
        if saved_env is not None:
            os.environ["PULUMI_CONFIG"] = saved_env
    return ProgramRun(stack, monitor.registered, mocks.reads, resolved)


def run_expecting_failure(
    stack: str, **kwargs: Any
) -> tuple[BaseException, RecordingMocks, RecordingMonitor]:
    """Run a program that must fail; return the error and what was registered before it."""
    mocks_seen: list[tuple[RecordingMocks, RecordingMonitor]] = []
    original = pulumi.runtime.set_mocks

    def remembering_set_mocks(mocks: Any, *args: Any, **kw: Any) -> None:
        mocks_seen.append((mocks, kw["monitor"]))
        original(mocks, *args, **kw)

    pulumi.runtime.set_mocks = remembering_set_mocks  # type: ignore[assignment]
    try:
        run_program(stack, **kwargs)
    except BaseException as error:
        mocks, monitor = mocks_seen[-1]
        return error, mocks, monitor
    finally:
        pulumi.runtime.set_mocks = original  # type: ignore[assignment]
    raise AssertionError(f"the {stack} program succeeded with {kwargs}")
