"""`starling dev controlplane`: run etcd + kube-apiserver + kube-controller-manager locally.

The `dev` command group belongs to `starling.harness.cli`; this module adds one command to
it, so `starling.cli` lists it after that module. Only argparse is imported at
registration; the harness (httpx, cryptography) loads when the command runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `controlplane` to the existing `starling dev` group."""
    dev = subparsers.choices.get("dev")
    if dev is None:
        raise RuntimeError(
            "starling.harness.controlplane_cli must be registered after starling.harness.cli "
            "(it adds a command to `starling dev`)"
        )
    register_dev_command(_dev_commands(dev))


def register_dev_command(
    dev_commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    command = dev_commands.add_parser(
        "controlplane",
        help="run etcd + kube-apiserver + kube-controller-manager until Ctrl-C",
        description=(
            "Start a Kubernetes control plane without nodes on 127.0.0.1 (binaries built "
            "from Go modules on first use; see docs/controlplane.md), install the Strimzi "
            "CRDs, print the kubeconfig path and wait for Ctrl-C."
        ),
    )
    command.add_argument(
        "--no-controller-manager",
        dest="controller_manager",
        action="store_false",
        help="API server and etcd only (no garbage collection or namespace deletion)",
    )
    command.add_argument(
        "--no-strimzi-crds",
        dest="strimzi_crds",
        action="store_false",
        help="do not install the Strimzi CRDs from ../shared/strimzi-crds/1.2.0",
    )
    command.set_defaults(handler=_run_controlplane)


def _dev_commands(
    dev: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    # argparse offers no public way back to a parser's subcommand group.
    for action in dev._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("`starling dev` has no subcommands to extend")


def _run_controlplane(args: argparse.Namespace) -> int:
    from starling.harness.controlplane import ControlPlane, ControlPlaneError

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ControlPlane.start(
            controller_manager=args.controller_manager,
            install_strimzi_crds=args.strimzi_crds,
            progress=report,
        ) as plane:
            print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
            report(f"API server {plane.server}; logs in {plane.directory / 'logs'}; Ctrl-C stops")
            problem = None
            while problem is None and not stop.wait(1.0):
                problem = plane.exited_component()
            if problem:
                report(problem)
            report("stopping the control plane ...")
    except ControlPlaneError as error:
        print(f"starling dev controlplane: {error}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if problem else 0
