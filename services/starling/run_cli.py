"""`starling run <service>`: run one stream service, the gateway or the identity service,
until SIGTERM.

Exit codes: 0 stopped cleanly; 1 the runtime failed (a batch could not be completed;
nothing was committed for it); 2 bad configuration; 3 shutdown overran its deadline.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_SHUTDOWN_TIMEOUT = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from starling.runtime.config import SERVICE_NAMES

    parser = subparsers.add_parser(
        "run",
        help="run a stream service, the gateway or the identity service (configured by"
        " environment variables)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("service", choices=SERVICE_NAMES)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "INFO"),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="default: $LOG_LEVEL or INFO",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run_service(args.service)


def run_service(service: str) -> int:
    from starling.runtime.config import ConfigError, RuntimeSettings
    from starling.runtime.consumer import ConsumerRuntime, RuntimeFailedError
    from starling.services import build_handler

    log = logging.getLogger("starling.run")
    configured = os.environ.get("STARLING_SERVICE")
    if configured and configured != service:
        log.error("STARLING_SERVICE=%s but the command runs %s", configured, service)
        return EXIT_CONFIG
    if service == "gateway":
        return _run_gateway()
    if service == "identity":
        return _run_identity()
    try:
        settings = RuntimeSettings.from_env(starling_service=service)
        handler = build_handler(settings)
    except ConfigError as error:
        log.error("%s", error)
        return EXIT_CONFIG
    try:
        runtime = ConsumerRuntime(settings, handler)
    except ConfigError as error:  # e.g. METRICS_PORT taken by another service
        log.error("%s", error)
        return EXIT_CONFIG
    deadline_s = settings.starling_shutdown_timeout_s

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if runtime.stopping:
            return
        log.info(
            "%s: %s received, stopping within %g s", service, signal.strsignal(signum), deadline_s
        )
        runtime.request_stop()
        # If the last batch or leaving the group hangs (broker gone), exit anyway: the
        # batch is not committed, so it is redelivered, never lost.
        timer = threading.Timer(deadline_s, _overran, args=(service, deadline_s))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runtime.run()
    except RuntimeFailedError as error:
        log.error("%s", error)
        return EXIT_FAILED
    log.info("%s: stopped", service)
    return 0


def _run_gateway() -> int:
    """The gateway is an HTTP server, not a consumer loop: uvicorn owns its signals."""
    from starling.gateway.server import run_gateway
    from starling.gateway.settings import GatewaySettings
    from starling.runtime.config import ConfigError, RuntimeSettings, load_settings

    try:
        runtime = RuntimeSettings.from_env(starling_service="gateway")
        settings = load_settings(GatewaySettings)
    except ConfigError as error:
        logging.getLogger("starling.run").error("%s", error)
        return EXIT_CONFIG
    try:
        return run_gateway(runtime, settings)
    except ConfigError as error:  # HTTP_PORT or METRICS_PORT taken
        logging.getLogger("starling.run").error("%s", error)
        return EXIT_CONFIG


def _run_identity() -> int:
    """The identity service is an HTTP server too (see `_run_gateway`)."""
    from starling.identity.server import run_identity
    from starling.identity.settings import IdentitySettings
    from starling.runtime.config import ConfigError, RuntimeSettings, load_settings

    try:
        runtime = RuntimeSettings.from_env(starling_service="identity")
        settings = load_settings(IdentitySettings)
    except ConfigError as error:
        logging.getLogger("starling.run").error("%s", error)
        return EXIT_CONFIG
    try:
        return run_identity(runtime, settings)
    except ConfigError as error:  # HTTP_PORT or METRICS_PORT taken
        logging.getLogger("starling.run").error("%s", error)
        return EXIT_CONFIG


def _overran(service: str, deadline_s: float) -> None:
    logging.getLogger("starling.run").error(
        "%s: shutdown took longer than %g s; exiting without a clean close", service, deadline_s
    )
    logging.shutdown()
    os._exit(EXIT_SHUTDOWN_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    """`python -m starling.run_cli <service>`: the same as `starling run <service>`."""
    parser = argparse.ArgumentParser(prog="starling")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
