"""JSON answers, and errors as `{"error": kind, "reason": code, "field": path, "message"}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json"

_encoder = msgspec.json.Encoder()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(_encoder.encode(body), status, headers, media_type=JSON_MEDIA_TYPE)


class ApiError(Exception):
    """A refusal, answered as the JSON error body. `reason` is the finer code; without
    one it is null, or `error` itself in a subclass setting `reason_repeats_error` (the
    gateway's contract: every error there has a reason)."""

    reason_repeats_error: ClassVar[bool] = False

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.reason = error if reason is None and self.reason_repeats_error else reason
        self.message = message
        self.field = field
        self.headers = headers

    def response(self) -> Response:
        body = {
            "error": self.error,
            "reason": self.reason,
            "field": self.field,
            "message": self.message,
        }
        return json_response(body, self.status, self.headers)

    @classmethod
    async def for_http_exception(cls, _request: Request, error: Exception) -> Response:
        """Starlette's own refusals (no route, wrong method) in the same JSON shape."""
        assert isinstance(error, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return cls(error.status_code, kind, str(error.detail), headers=error.headers).response()
