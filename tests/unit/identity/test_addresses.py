"""Client address through trusted proxies: only the hops we trust are believed."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.datastructures import Headers

from starling.identity.addresses import ClientResolver, parse_address

pytestmark = pytest.mark.unit

PROXIES = ClientResolver([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")])


def headers(*forwarded: str, country: str | None = None) -> Headers:
    raw = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    if country is not None:
        raw.append((b"x-client-country", country.encode()))
    return Headers(raw=raw)


def test_an_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    origin = PROXIES.resolve("203.0.113.9", headers("198.51.100.1", country="NL"))
    assert origin.address == "203.0.113.9"
    assert origin.country is None


def test_no_trusted_proxies_means_the_peer() -> None:
    nobody = ClientResolver([])
    assert nobody.resolve("10.1.2.3", headers("198.51.100.1")).address == "10.1.2.3"


def test_through_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client wrote a fake first entry; the proxies appended what they saw.
    forwarded = headers("1.1.1.1, 198.51.100.7, 10.0.0.5", country="de")
    origin = PROXIES.resolve("10.0.0.9", forwarded)
    assert origin.address == "198.51.100.7"
    assert origin.country == "DE"


def test_several_header_lines_read_as_one_list() -> None:
    origin = PROXIES.resolve("10.0.0.9", headers("1.1.1.1", "198.51.100.7, 10.0.0.5"))
    assert origin.address == "198.51.100.7"


def test_all_hops_trusted_gives_the_leftmost_and_no_header_gives_the_peer() -> None:
    assert PROXIES.resolve("10.0.0.9", headers("10.0.0.1, 10.0.0.2")).address == "10.0.0.1"
    assert PROXIES.resolve("10.0.0.9", headers()).address == "10.0.0.9"


def test_a_garbled_hop_stops_at_the_last_trusted_one() -> None:
    origin = PROXIES.resolve("10.0.0.9", headers("198.51.100.7, not-an-ip, 10.0.0.5"))
    assert origin.address == "10.0.0.5"


def test_ipv6_ports_and_mapped_addresses() -> None:
    origin = PROXIES.resolve("fd00::1", headers("[2001:db8::7]:4711, 198.51.100.8:1234"))
    assert origin.address == "198.51.100.8"
    assert PROXIES.resolve("::ffff:10.0.0.9", headers("[2001:db8::7]")).address == "2001:db8::7"
    assert parse_address("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")


def test_country_must_be_two_letters() -> None:
    assert PROXIES.resolve("10.0.0.9", headers("198.51.100.7", country="XYZ")).country is None
    assert PROXIES.resolve("10.0.0.9", headers("198.51.100.7", country="")).country is None


def test_a_peer_that_is_no_address_is_kept_as_is() -> None:
    assert PROXIES.resolve(None, headers()).address == "unknown"
    assert PROXIES.resolve("testclient", headers("10.0.0.1")).address == "testclient"
