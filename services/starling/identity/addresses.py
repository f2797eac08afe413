"""The client's address (and country) as seen through the configured trusted proxies.

`X-Forwarded-For` is a list every proxy appends the address it saw to; anyone can write
its beginning. So it is read from the right, and only as far as the hops are proxies we
trust: the first address that is not one is the client. A request that does not come
from a trusted proxy is taken at its peer address, whatever its headers say.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers

from starling.identity.settings import IpNetwork

FORWARDED_FOR = "x-forwarded-for"
# Set by a trusted proxy that knows the client's country (e.g. from a GeoIP lookup).
CLIENT_COUNTRY = "x-client-country"
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# What a peer without a usable address is recorded as (never happens behind uvicorn's
# TCP listener, but an ASGI server may not tell).
UNKNOWN_ADDRESS = "unknown"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ClientOrigin:
    address: str
    # ISO 3166-1 alpha-2, only when a trusted proxy said so.
    country: str | None = None


def parse_address(text: str) -> IpAddress | None:
    """An address as proxies write it: bare, `v4:port`, `[v6]` or `[v6]:port`."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen by a dual-stack listener is that IPv4 address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientResolver:
    def __init__(self, trusted_proxies: Sequence[IpNetwork]) -> None:
        self._trusted = tuple(trusted_proxies)

    def is_trusted(self, address: IpAddress) -> bool:
        return any(address.version == net.version and address in net for net in self._trusted)

    def resolve(self, peer: str | None, headers: Headers) -> ClientOrigin:
        peer_address = parse_address(peer) if peer else None
        if peer_address is None:
            return ClientOrigin(peer or UNKNOWN_ADDRESS)
        if not self.is_trusted(peer_address):
            return ClientOrigin(str(peer_address))
        client = peer_address
        hops = [
            hop
            for value in headers.getlist(FORWARDED_FOR)
            for hop in value.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                # A trusted proxy wrote something that is not an address: the last hop we
                # can vouch for is the one that wrote it.
                break
            client = address
            if not self.is_trusted(address):
                break
        return ClientOrigin(str(client), self._country(headers))

    @staticmethod
    def _country(headers: Headers) -> str | None:
        value = headers.get(CLIENT_COUNTRY, "").strip().upper()
        return value if _COUNTRY.match(value) else None
