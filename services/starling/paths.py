"""Where Starling keeps things outside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Root of the tool cache (Kafka jars, Go-built binaries), versioned per tool below it.

    `STARLING_CACHE` overrides it; the default follows the XDG convention so a warm
    machine reuses what an earlier run fetched or built.
    """
    override = os.environ.get("STARLING_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "starling"
