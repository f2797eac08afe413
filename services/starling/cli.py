"""The `starling` command: a thin dispatcher over the subcommands each module registers."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Each entry is (module path, name of its `register(subparsers)` function). Modules are
# imported only when the CLI starts, so importing `starling` stays cheap for services.
_COMMAND_MODULES: tuple[str, ...] = (
    "starling.topics_cli",
    "starling.loadgen.cli",
    "starling.run_cli",
    "starling.harness.cli",
    # extends the `dev` group that starling.harness.cli creates, so it must come after it
    "starling.harness.controlplane_cli",
    # `starling up`/`down`/`status`: the whole local stack (a development command)
    "starling.harness.stack_cli",
    "starling.toolchain.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starling", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        module = importlib.import_module(module_name)
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = (
            module.register
        )
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
