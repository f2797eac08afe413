"""The bound on a request's head (request line plus headers), held in both places a head
can pass it, with the same JSON 431 from each: the server's h11 buffer (a head that never
ends) and a middleware (a head that arrived whole in one read, which h11 parses at once)."""

from __future__ import annotations

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from starling.web.errors import ApiError

HEAD_TOO_LARGE = "header_too_large"


def head_too_large(max_bytes: int) -> ApiError:
    return ApiError(
        431,
        HEAD_TOO_LARGE,
        f"the request line and headers exceed the {max_bytes}-byte limit",
        reason=HEAD_TOO_LARGE,
    )


class HeadSizeLimit:
    """431 for a request whose line and headers pass `max_bytes` (a sum over a few
    headers: the head is parsed already)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            for name, value in scope["headers"]:
                size += len(name) + len(value) + 4  # ": " and CRLF
            if size > self.max_bytes:
                await head_too_large(self.max_bytes).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HeadLimitH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request whose head passes the size limit
    (`h11_max_incomplete_event_size`) with the JSON 431 and closing the connection;
    uvicorn's own answer to every protocol error is a plain-text 400."""

    def send_400_response(self, msg: str) -> None:
        buffered, _closed = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size
        if limit is None or len(buffered) <= limit or self.conn.our_state is not h11.IDLE:
            super().send_400_response(msg)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"connection", b"close"),
        ]
        response = h11.Response(
            status_code=431, headers=headers, reason=b"Request Header Fields Too Large"
        )
        body = bytes(head_too_large(limit).response().body)
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()
