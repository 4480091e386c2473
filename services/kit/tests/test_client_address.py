"""The client's address: X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from marshmallow import ValidationError

from flotilla_kit.client_address import client_address, init_app, parse_address, resolve
from flotilla_kit.settings import parse_networks

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # Nothing trusted in front: the peer, whatever the header says.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # A trusted proxy: the hop it appended.
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        # The client's own entries left of the real hop are spoofing: only the rightmost untrusted counts.
        ("10.1.2.3", ["1.1.1.1, 2.2.2.2, 198.51.100.1"], "198.51.100.1"),
        # A chain of trusted proxies is skipped from the right, across repeated headers too.
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9", "127.0.0.1"], "198.51.100.1"),
        ("127.0.0.1", ["2001:db8::7", "fd00::1"], "2001:db8::7"),
        # Every hop trusted: the leftmost.
        ("10.1.2.3", ["10.0.0.5, 10.0.0.6"], "10.0.0.5"),
        # A trusted proxy with no header is the client itself.
        ("10.1.2.3", [], "10.1.2.3"),
        # Ports and brackets are read; IPv4-mapped IPv6 is the IPv4 address.
        ("10.1.2.3", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.1.2.3", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["::ffff:198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["2001:DB8:0:0::1"], "2001:db8::1"),
    ],
)
def test_the_rightmost_untrusted_hop_is_the_client(peer: str, forwarded_for: list[str], client: str) -> None:
    assert resolve(peer, forwarded_for, PROXIES) == client


@pytest.mark.parametrize(
    "malformed",
    [
        "unknown",
        "",
        "evil.example",
        "1.2.3.4.5",
        "1.2.3.4:http",
        "[2001:db8::1",
        "2001:db8::1]:80",
        "1.2.3.4 5",
    ],
)
def test_a_malformed_hop_is_never_returned_the_last_valid_one_is(malformed: str) -> None:
    assert resolve("10.1.2.3", [malformed], PROXIES) == "10.1.2.3"
    assert resolve("10.1.2.3", [f"198.51.100.1, {malformed}, 10.0.0.7"], PROXIES) == "10.0.0.7"
    # Left of the client's real hop it is not even read.
    assert resolve("10.1.2.3", [f"{malformed}, 198.51.100.1"], PROXIES) == "198.51.100.1"


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert resolve("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_a_peer_that_is_no_address_is_returned_as_it_is() -> None:
    assert resolve(None, ["198.51.100.1"], PROXIES) == "unknown"
    assert resolve("unix:/run/app.sock", ["198.51.100.1"], PROXIES) == "unix:/run/app.sock"


def test_hops_parse_only_as_addresses() -> None:
    assert str(parse_address(" 198.51.100.1 ")) == "198.51.100.1"
    assert parse_address("01.2.3.4") is None  # leading zeros are ambiguous (octal in some parsers)
    assert parse_address("1.2.3.4:٤٤٣") is None  # non-ASCII digits


def test_trusted_proxies_are_parsed_and_a_bad_entry_is_named() -> None:
    assert [str(network) for network in parse_networks(" 10.0.0.0/8,,::1 ")] == ["10.0.0.0/8", "::1/128"]
    assert parse_networks("") == ()
    with pytest.raises(ValidationError, match=re.escape("'proxy.internal'")):
        parse_networks("10.0.0.0/8, proxy.internal")
    with pytest.raises(ValidationError, match=re.escape("'10.0.0.1/8'")):
        parse_networks("10.0.0.1/8")


def test_client_address_reads_the_request_with_the_apps_proxies() -> None:
    app = Flask(__name__)
    init_app(app, PROXIES)
    headers = {"X-Forwarded-For": "1.1.1.1, 198.51.100.1"}
    with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert client_address() == "198.51.100.1"
    with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        assert client_address() == "203.0.113.9"
    bare = Flask(__name__)  # no init_app: nothing trusted
    with bare.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert client_address() == "10.1.2.3"
