"""The live page: served by the gateway without a token, self-contained (nothing from
another origin but the identity service it is told about), locked down by its CSP."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from starling.gateway.settings import GatewaySettings
from starling.runtime.config import ConfigError, load_settings
from tests.tokens import TokenIssuer
from tests.unit.gateway.conftest import Client

pytestmark = pytest.mark.unit

PAGES = {
    "/": "text/html",
    "/static/live.js": "text/javascript",
    "/static/live.css": "text/css",
}


def test_page_and_assets_are_public_and_locked_down(
    make_client: Callable[..., Client], issuer: TokenIssuer
) -> None:
    client = make_client(**issuer.gateway_settings(identity_url="http://127.0.0.1:8081/"))
    for path, media_type in PAGES.items():
        answer = client.get(path)  # no token
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith(media_type)
        assert answer.headers["x-content-type-options"] == "nosniff"
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "connect-src 'self' http://127.0.0.1:8081;" in csp
    config = client.get("/config.json")
    assert config.status_code == 200
    assert config.json() == {"identity_url": "http://127.0.0.1:8081"}


def test_identity_url_defaults_to_the_issuer(
    make_client: Callable[..., Client], issuer: TokenIssuer
) -> None:
    client = make_client(**issuer.gateway_settings())
    assert client.get("/config.json").json() == {"identity_url": issuer.issuer.rstrip("/")}


def test_page_references_only_what_the_gateway_serves(
    make_client: Callable[..., Client], issuer: TokenIssuer
) -> None:
    client = make_client(**issuer.gateway_settings())
    html = client.get("/").text
    referenced = set(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert referenced == {"/static/live.js", "/static/live.css"}
    # Works offline: no absolute URL anywhere (a CDN, a font, an analytics beacon).
    for path in PAGES:
        assert not re.search(r"https?://", client.get(path).text), path
    # Accessible basics: a language, labelled inputs, live regions for pushed content.
    assert '<html lang="en">' in html
    for field in re.findall(r'<(?:input|textarea) id="([^"]+)"', html):
        assert f'<label for="{field}">' in html, field
    assert html.count('aria-live="polite"') >= 4


def test_identity_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_GATEWAY_ISSUER", "https://issuer.example")
    monkeypatch.setenv("STARLING_GATEWAY_AUDIENCE", "starling")
    monkeypatch.setenv("STARLING_GATEWAY_IDENTITY_URL", "ftp://identity")
    with pytest.raises(ConfigError, match="STARLING_GATEWAY_IDENTITY_URL"):
        load_settings(GatewaySettings)


def test_who_to_follow_is_the_requesters_own(
    make_client: Callable[..., Client], issuer: TokenIssuer
) -> None:
    client = make_client(**issuer.gateway_settings())
    assert client.get("/v1/users/7/who-to-follow").status_code == 401
    other = client.get(
        "/v1/users/8/who-to-follow", headers={"Authorization": f"Bearer {issuer.mint(7)}"}
    )
    assert other.status_code == 403
    assert other.json()["reason"] == "not_your_resource"
