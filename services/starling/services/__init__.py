"""The stream services, one module each; `build_handler` picks one by name."""

from __future__ import annotations

from starling.runtime.config import RuntimeSettings
from starling.runtime.handler import Handler


def build_handler(settings: RuntimeSettings) -> Handler:
    """The handler of `settings.starling_service`, with its own settings from the env."""
    name = settings.starling_service
    if name == "ingestion":
        from starling.services.ingestion import IngestionHandler

        return IngestionHandler(settings)
    if name == "trends":
        from starling.services.trends import TrendsHandler

        return TrendsHandler(settings)
    if name == "timelines":
        from starling.services.timelines import TimelinesHandler

        return TimelinesHandler(settings)
    if name == "notifier":
        from starling.services.notifier import NotifierHandler

        return NotifierHandler(settings)
    raise ValueError(f"unknown service {name!r}")
