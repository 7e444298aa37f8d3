"""The client's address, as the server can know it behind the reverse proxy.

Contract
--------
``client_ip(request)`` is the one rule every limit uses (portal links, API, login lockout via
``AXES_CLIENT_IP_CALLABLE``):

* If the TCP peer (``REMOTE_ADDR``) is **not** one of ``settings.TRUSTED_PROXIES``, the peer is
  the client: any forwarding header it sent is ignored (anyone can write one).
* If the peer is a trusted proxy, the configured header (``settings.CLIENT_IP_HEADER``, default
  ``X-Forwarded-For``) is read **from the right**: each trusted proxy appends the address it
  received the request from, so the first entry from the right that is not itself a trusted
  proxy is the client. Entries further left were written by the client and are never used.
  A missing or malformed header leaves the peer's address (a misconfigured proxy), never a
  value the client chose.

The proxy's own address is therefore never the answer unless no proxy is configured, in which
case the README's configuration table says to set ``TRUSTED_PROXIES``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "0.0.0.0"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``::1``) as networks; ValueError names a bad
    entry (the settings module turns it into a start-up error naming TRUSTED_PROXIES)."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return tuple(networks)


def _address(value: str) -> Address | None:
    """An address from a header entry (``1.2.3.4``, ``[2001:db8::1]:443``, ``1.2.3.4:80``)."""
    text = value.strip().strip('"')
    if text.startswith("["):  # [IPv6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # IPv4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=8)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def _is_trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def header_meta_key(header: str) -> str:
    """``X-Forwarded-For`` → ``HTTP_X_FORWARDED_FOR`` (how WSGI hands headers to Django)."""
    return "HTTP_" + header.strip().upper().replace("-", "_")


def client_ip(request: HttpRequest) -> str:
    """The client's address under the rule of the module docstring, as text."""
    peer = _address(str(request.META.get("REMOTE_ADDR") or ""))
    if peer is None:
        return UNKNOWN
    trusted = _trusted(tuple(getattr(settings, "TRUSTED_PROXIES", ())))
    if not trusted or not _is_trusted(peer, trusted):
        return str(peer)
    header = getattr(settings, "CLIENT_IP_HEADER", "X-Forwarded-For")
    raw = str(request.META.get(header_meta_key(header)) or "")
    hops = [hop for hop in raw.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage where a proxy should have written an address: stop trusting
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def address_identity(address: str) -> str:
    """What a throttle counts an address as: itself for IPv4, its /64 for IPv6 (one host
    usually holds a whole /64, so counting single IPv6 addresses would be easy to dodge)."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed) if parsed is not None else address
