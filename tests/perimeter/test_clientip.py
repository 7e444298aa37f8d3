"""The client address behind trusted proxies: the one rule every limit keys on.

Requirement ids: issue 14 "client address from a configured trusted proxy header — never the
proxy's own address"; ASVS 4.0.3 7.1.1 (logs), 2.2.1 (anti-automation keyed on the client).
"""

from __future__ import annotations

import ipaddress

import pytest
from django.test import RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from vertebra.perimeter.clientip import address_identity, client_ip, parse_networks

factory = RequestFactory()


def ip_of(remote: str, forwarded: str | None = None, header: str = "HTTP_X_FORWARDED_FOR") -> str:
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta[header] = forwarded
    return client_ip(factory.get("/", **meta))


def test_without_trusted_proxies_the_peer_is_the_client(settings) -> None:
    settings.TRUSTED_PROXIES = []
    assert ip_of("203.0.113.5", "1.2.3.4") == "203.0.113.5"  # a header anyone can write


def test_behind_a_trusted_proxy_the_forwarded_client_counts_not_the_proxy(settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert ip_of("10.0.0.2", "198.51.100.7") == "198.51.100.7"
    # The client wrote its own header first; the proxy appended the real peer.
    assert ip_of("10.0.0.2", "6.6.6.6, 198.51.100.7") == "198.51.100.7"
    # Two proxies in a row: skip both from the right.
    assert ip_of("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.1.1.1") == "198.51.100.7"
    # An untrusted peer's header is ignored entirely.
    assert ip_of("203.0.113.9", "198.51.100.7") == "203.0.113.9"
    # A proxy that forwards nothing: its own address is all there is (misconfiguration).
    assert ip_of("10.0.0.2") == "10.0.0.2"
    # Garbage where the proxy's entry should be: stop, never use client-written text.
    assert ip_of("10.0.0.2", "198.51.100.7, not-an-ip") == "10.0.0.2"
    # Ports and IPv6 brackets as some proxies write them; IPv4-mapped IPv6 normalised.
    assert ip_of("10.0.0.2", "[2001:db8::1]:443") == "2001:db8::1"
    assert ip_of("10.0.0.2", "198.51.100.7:5555") == "198.51.100.7"
    assert ip_of("::ffff:10.0.0.2", "198.51.100.8") == "198.51.100.8"


def test_the_header_is_configurable(settings) -> None:
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    assert ip_of("127.0.0.1", "198.51.100.9", header="HTTP_X_REAL_IP") == "198.51.100.9"
    assert ip_of("127.0.0.1", "198.51.100.9") == "127.0.0.1"  # X-Forwarded-For not read


@given(
    spoofed=st.lists(st.ip_addresses().map(str) | st.text(max_size=20), max_size=5),
    client=st.ip_addresses(v=4).map(str),
)
def test_nothing_the_client_writes_changes_its_address(spoofed: list[str], client: str) -> None:
    from django.conf import settings

    old = settings.TRUSTED_PROXIES
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    try:
        if ipaddress.ip_address(client) in ipaddress.ip_network("127.0.0.1/32"):
            return
        forwarded = ", ".join([s.replace(",", "") for s in spoofed] + [client])
        assert ip_of("127.0.0.1", forwarded) == client
    finally:
        settings.TRUSTED_PROXIES = old


def test_ipv6_clients_are_counted_per_64() -> None:
    assert address_identity("2001:db8:1:2:aaaa::1") == address_identity("2001:db8:1:2:bbbb::9")
    assert address_identity("2001:db8:1:3::1") != address_identity("2001:db8:1:2::1")
    assert address_identity("198.51.100.7") == "198.51.100.7"


def test_a_bad_trusted_proxy_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["10.0.0.0/8", "proxy.example.org"])


def test_deploy_check_warns_without_trusted_proxies(settings) -> None:
    from vertebra.perimeter.checks import trusted_proxies_set

    settings.PRODUCTION = True
    settings.TRUSTED_PROXIES = []
    assert [w.id for w in trusted_proxies_set()] == ["perimeter.W001"]
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    assert trusted_proxies_set() == []
