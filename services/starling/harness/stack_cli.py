"""`starling up`, `starling down`, `starling status`: the whole local pipeline in one command.

Only argparse is imported here; the harness loads when a command runs (see harness/cli.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from starling.harness.stack import DEFAULT_RATE, DEFAULT_USERS, default_data_dir

    data_dir_help = f"state, logs and the identity seed (default: {default_data_dir()})"

    up = subparsers.add_parser(
        "up",
        help="run the whole pipeline on this machine (Kafka, store, services, gateway,"
        " identity, Airflow, traffic) until Ctrl-C",
        description="Start, in dependency order, a real Kafka broker with the catalog's"
        " topics, the store, the identity service (dev mode), the gateway, the four stream"
        " services, Airflow with the repository's DAGs and the traffic generator; print one"
        " table of what runs where; stop everything on Ctrl-C or `starling down`.",
    )
    up.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    up.add_argument("--fresh", action="store_true", help="wipe the data directory first")
    up.add_argument("--no-airflow", dest="airflow", action="store_false", help="skip Airflow")
    up.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"traffic generator events/s (default {DEFAULT_RATE:g})",
    )
    up.add_argument("--seed", type=int, default=0, help="traffic generator seed (default 0)")
    up.add_argument(
        "--users",
        type=int,
        default=DEFAULT_USERS,
        help=f"generated users u1..uN, each can sign in (default {DEFAULT_USERS})",
    )
    up.add_argument(
        "--replicas", type=int, default=1, help="copies of each stream service (default 1)"
    )
    up.add_argument(
        "--gateway-port", type=int, default=8080, help="gateway port (default 8080; 0 = any)"
    )
    up.add_argument(
        "--identity-port", type=int, default=8081, help="identity port (default 8081; 0 = any)"
    )
    up.set_defaults(handler=_run_up)

    down = subparsers.add_parser("down", help="stop the stack `starling up` runs")
    down.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    down.set_defaults(handler=_run_down)

    status = subparsers.add_parser(
        "status",
        help="one table of the local stack's health; exit 1 if anything is unhealthy",
    )
    status.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    status.add_argument(
        "--kube-context",
        default=None,
        help="check a cluster instead: the kubeconfig context whose API server to read"
        " (Strimzi resources, Deployments/StatefulSets, the Airflow release)",
    )
    status.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig file for --kube-context (default: $KUBECONFIG or ~/.kube/config)",
    )
    status.set_defaults(handler=_run_status)


def _data_dir(args: argparse.Namespace) -> Path:
    from starling.harness.stack import default_data_dir

    return Path(args.data_dir or default_data_dir()).expanduser().resolve()


def _say(line: str) -> None:
    print(line, flush=True)


def _fail(line: str) -> int:
    print(f"starling up: {line}", file=sys.stderr, flush=True)
    return 1


def validate(args: argparse.Namespace) -> str | None:
    """The first bad option as one line, or None."""
    from starling.harness.stack import StackError, check_port_free

    if args.replicas < 1 or args.replicas > 8:
        return "--replicas must be 1..8"
    if args.rate <= 0:
        return "--rate must be > 0"
    if args.users < 2:
        return "--users must be >= 2"
    try:
        for port, option in (
            (args.gateway_port, "--gateway-port"),
            (args.identity_port, "--identity-port"),
        ):
            if port:
                check_port_free(port, option)
    except StackError as error:
        return str(error)
    return None


def _run_up(args: argparse.Namespace) -> int:
    from starling.harness.airflow import AirflowHarnessError
    from starling.harness.kafka import KafkaHarnessError, _java_executable
    from starling.harness.redis import RedisHarnessError, redis_server_executable
    from starling.harness.stack import (
        DEV_PASSWORD,
        Stack,
        StackError,
        UpOptions,
        pid_alive,
        prepare_data_dir,
        read_state,
    )

    data_dir = _data_dir(args)
    existing = read_state(data_dir)
    if existing is not None and pid_alive(int(existing.get("pid", 0))):
        return _fail(
            f"a stack already runs from {data_dir} (pid {existing['pid']}); stop it with"
            f" `starling down --data-dir {data_dir}` or pass another --data-dir"
        )
    problem = validate(args)
    if problem:
        return _fail(problem)
    try:
        # Missing programs are named before anything starts (Java would otherwise only
        # show up after the Kafka jars are fetched).
        _java_executable()
        redis_server_executable()
        prepare_data_dir(data_dir, fresh=args.fresh)
    except (StackError, KafkaHarnessError, RedisHarnessError) as error:
        return _fail(str(error))

    options = UpOptions(
        data_dir=data_dir,
        airflow=args.airflow,
        rate=args.rate,
        seed=args.seed,
        users=args.users,
        replicas=args.replicas,
        gateway_port=args.gateway_port,
        identity_port=args.identity_port,
    )
    stack = Stack(options, _say)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # `starling down` sends SIGTERM: the same clean stop as Ctrl-C.
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    code = 0
    try:
        stack.start()
        print(render_up_table(stack.state), flush=True)
        _say(
            f"all healthy after {time.monotonic() - started:.1f} s\n"
            f"gateway: {stack.state.gateway_url}  (sign in at {stack.state.identity_url}"
            f"/v1/sessions as u1..u{options.users} with password {DEV_PASSWORD!r})\n"
            f"logs: {data_dir / 'logs'}\n"
            f"Ctrl-C here, or `starling down --data-dir {data_dir}`, stops everything."
        )
        while True:
            time.sleep(1.0)
            problem = stack.dead_component()
            if problem:
                print(f"starling up: {problem}", file=sys.stderr, flush=True)
                code = 1
                break
    except KeyboardInterrupt:
        code = 0
    except (StackError, KafkaHarnessError, RedisHarnessError, AirflowHarnessError) as error:
        print(f"starling up: {error}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # A second Ctrl-C must not abandon the stop half way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return code


def render_up_table(state: object) -> str:
    from rich.console import Console
    from rich.table import Table

    from starling.harness.stack import StackState, probe

    assert isinstance(state, StackState)
    table = Table(title="starling up")
    table.add_column("component")
    table.add_column("address")
    table.add_column("health")
    # Airflow's four rows share the api-server's health URL; it answers slowly while the
    # scheduler starts its first runs on a small machine, so it gets one patient probe.
    answers: dict[str, bool] = {}
    for component in state.components:
        if component.health_url:
            if component.health_url not in answers:
                timeout = 15.0 if component.kind == "airflow" else 2.0
                answers[component.health_url] = probe(component.health_url, timeout=timeout)
            ok = answers[component.health_url]
        else:
            from starling.harness.stack import pid_alive

            ok = all(pid_alive(pid) for pid in component.pids)
        table.add_row(component.name, component.address, "ok" if ok else "UNHEALTHY")
    console = Console(width=120, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def _run_down(args: argparse.Namespace) -> int:
    from starling.harness.stack import StackError, request_down

    try:
        print(request_down(_data_dir(args)), flush=True)
    except StackError as error:
        print(f"starling down: {error}", file=sys.stderr)
        return 1
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from starling.harness.status import collect, render

    if args.kube_context is not None or args.kubeconfig is not None:
        return _run_cluster_status(args)
    rows, reason = collect(_data_dir(args))
    if reason:
        print(f"starling status: {reason}", file=sys.stderr)
        return 1
    print(render(rows), flush=True)
    return 0 if all(row.healthy is not False for row in rows) else 1


def _run_cluster_status(args: argparse.Namespace) -> int:
    from starling.harness.cluster_status import (
        ClusterStatusError,
        collect_cluster,
        default_kubeconfig,
        load_access,
    )
    from starling.harness.status import render

    if not args.kube_context:
        print("starling status: --kubeconfig needs --kube-context <context>", file=sys.stderr)
        return 1
    kubeconfig = Path(args.kubeconfig or default_kubeconfig()).expanduser()
    try:
        rows = collect_cluster(load_access(kubeconfig, args.kube_context))
    except ClusterStatusError as error:
        print(f"starling status: {error}", file=sys.stderr)
        return 1
    print(render(rows), flush=True)
    return 0 if all(row.healthy is not False for row in rows) else 1
