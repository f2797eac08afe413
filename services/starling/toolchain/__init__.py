"""Pinned command-line tools built from Go modules, cached per version under `cache_root()`.

The machines this project runs on reach the Go module proxy but no release downloads,
so every Go tool the tests need (helm today; etcd, kube-apiserver, the Pulumi engine
later) is compiled from its module at a pinned version. `ensure_tool("helm")` returns
the binary, building it on a cache miss.
"""

from __future__ import annotations

from starling.toolchain.build import ToolBuildError, cached_tool, ensure_tool, tool_dir
from starling.toolchain.catalog import TOOLS, GoTool, tool_named

__all__ = [
    "TOOLS",
    "GoTool",
    "ToolBuildError",
    "cached_tool",
    "ensure_tool",
    "tool_dir",
    "tool_named",
]
