"""The client's address behind trusted proxies: ``X-Forwarded-For`` believed only from them.

werkzeug's ``ProxyFix`` trusts a count of hops, whoever sent them: a client reaching the pod
directly (or through one proxy fewer than configured) would choose its own address. Here a hop
is believed only when the address that sent it is in ``TRUSTED_PROXIES``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from flask import Flask, current_app, request

from flotilla_kit.settings import Network

EXTENSION = "flotilla_trusted_proxies"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def init_app(app: Flask, trusted_proxies: Iterable[Network]) -> None:
    """Remember the proxies whose ``X-Forwarded-For`` this app believes."""
    app.extensions[EXTENSION] = tuple(trusted_proxies)


def client_address() -> str:
    """The address of the client of the current request (see ``resolve``)."""
    trusted: tuple[Network, ...] = current_app.extensions.get(EXTENSION, ())
    return resolve(request.remote_addr, request.headers.getlist("X-Forwarded-For"), trusted)


def resolve(remote_addr: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address from the peer's and the ``X-Forwarded-For`` headers' (in order).

    The peer's address unless it is a trusted proxy; then the hops from the right, skipping
    trusted ones, up to the first untrusted one (the leftmost when all are trusted). A malformed
    hop ends the walk and is never returned: the last valid hop before it is.
    """
    peer = parse_address(remote_addr or "")
    if peer is None:
        return remote_addr or "unknown"  # not a TCP peer (a UNIX socket): nothing to walk from
    client = peer
    if not _is_trusted(peer, trusted):
        return str(client)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def parse_address(text: str) -> IPAddress | None:
    """An IP address from a hop (``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:443``).

    An IPv4-mapped IPv6 address is read as the IPv4 one, so one client has one key. None when
    ``text`` is none of these (``unknown``, a name, garbage).
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and _is_port(port[1:]))):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port(port):
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_trusted(address: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
