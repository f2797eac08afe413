"""`starling tools`: build, locate and list the pinned Go-built tools."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tools",
        help="build and locate pinned tools (helm, ...) built from Go modules",
        description=(
            "Pinned tools built from the Go module proxy into a versioned cache "
            "(see docs/tools.md). Warm runs reuse the cache."
        ),
    )
    actions = parser.add_subparsers(dest="tools_command", required=True, metavar="ACTION")

    build = actions.add_parser("build", help="build tools that are not cached yet")
    build.add_argument("names", nargs="*", metavar="TOOL", help="tools to build (default: all)")
    build.set_defaults(handler=_build)

    path = actions.add_parser("path", help="print a tool's binary path, building it if needed")
    path.add_argument("name", metavar="TOOL")
    path.set_defaults(handler=_path)

    listing = actions.add_parser("list", help="show every tool, its pin and whether it is cached")
    listing.set_defaults(handler=_list)


def _build(args: argparse.Namespace) -> int:
    from starling.toolchain import TOOLS, ToolBuildError, ensure_tool, tool_named

    try:
        names = args.names or [tool.name for tool in TOOLS]
        for name in names:
            tool_named(name)  # reject a typo before spending minutes on the others
        for name in names:
            print(ensure_tool(name))
    except (KeyError, ToolBuildError) as error:
        print(f"starling tools build: {_message(error)}", file=sys.stderr)
        return 1
    return 0


def _path(args: argparse.Namespace) -> int:
    from starling.toolchain import ToolBuildError, ensure_tool

    try:
        print(ensure_tool(args.name))
    except (KeyError, ToolBuildError) as error:
        print(f"starling tools path: {_message(error)}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from starling.toolchain import TOOLS, cached_tool

    for tool in TOOLS:
        binary = cached_tool(tool)
        state = str(binary) if binary else "not built"
        print(f"{tool.name:<24} {tool.version:<40} {state}")
    return 0


def _message(error: Exception) -> str:
    # KeyError's str() wraps the message in quotes; the text itself is what users need.
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
