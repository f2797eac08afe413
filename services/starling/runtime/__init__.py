"""The shared consumer runtime: batched consumption, durable-then-commit, dead letters,
bounded retries, metrics and health probes. Services plug a `Handler` into it."""

from starling.runtime.config import SERVICE_NAMES, ConfigError, RuntimeSettings
from starling.runtime.consumer import ConsumerRuntime, RuntimeFailedError
from starling.runtime.faults import is_transient
from starling.runtime.handler import (
    BaseHandler,
    DeadLetter,
    Handler,
    Outbox,
    ProcessingError,
    Record,
    TransientError,
)

__all__ = [
    "SERVICE_NAMES",
    "BaseHandler",
    "ConfigError",
    "ConsumerRuntime",
    "DeadLetter",
    "Handler",
    "Outbox",
    "ProcessingError",
    "Record",
    "RuntimeFailedError",
    "RuntimeSettings",
    "TransientError",
    "is_transient",
]
