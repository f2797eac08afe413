"""The live page at `/`: one HTML document, one script and one stylesheet, shipped in the
package (`page/`) and served from memory. Nothing is fetched from elsewhere, so the page
works offline; the only other origin it talks to is the identity service it signs in at,
named in `/config.json` (and allowed by the Content-Security-Policy)."""

from __future__ import annotations

from importlib import resources
from typing import Final
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response

# Path served -> (resource in `page/`, media type).
ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/static/live.css": ("live.css", "text/css; charset=utf-8"),
}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Page:
    def __init__(self, identity_url: str | None) -> None:
        self._assets = {
            path: (resources.files("starling.gateway").joinpath("page", name).read_bytes(), media)
            for path, (name, media) in ASSETS.items()
        }
        self._config = msgspec.json.encode({"identity_url": identity_url})
        connect = "'self'" + (f" {origin_of(identity_url)}" if identity_url else "")
        self._headers = {
            # Only our own script and style; fetches to us and to the identity service.
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
                f" connect-src {connect}; form-action 'none'; frame-ancestors 'none';"
                " base-uri 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # Small and changed only by a new release: revalidate rather than go stale.
            "Cache-Control": "no-cache",
        }

    async def asset(self, request: Request) -> Response:
        body, media_type = self._assets[request.url.path]
        return Response(body, media_type=media_type, headers=self._headers)

    async def config(self, _request: Request) -> Response:
        return Response(
            self._config,
            media_type="application/json",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )
