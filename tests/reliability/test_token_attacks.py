"""Forged, stale and misdirected tokens: every service refuses them (401 invalid_token, or 403)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from flotilla_kit.auth import REFUSALS, NotAnAccessToken, refusal
from flotilla_users.keys import generate_key, write_private_key
from tests.support.cases import Case
from tests.support.platform import AUDIENCE, ISSUER, Platform
from tests.support.processes import ServiceProcess
from tests.support.tokens import client_token, kid_of, private_key, signed_token

PROBLEM = "application/problem+json"
LEEWAY_SECONDS = 5  # the kit's TokenVerifier default


@dataclass(frozen=True)
class Endpoint:
    """A protected endpoint, with a body it accepts from an admitted caller."""

    service: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    admitted: int = 200

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"

    def send(self, platform: Platform, token: str) -> requests.Response:
        """Call it with ``token`` as the bearer token."""
        service: ServiceProcess = getattr(platform, self.service)
        return requests.request(
            self.method,
            f"{service.url}{self.path}",
            json=self.body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
            timeout=30,
        )


@dataclass(frozen=True)
class Target:
    """A real account and product: what the untampered claims may reach."""

    account_id: str
    product_id: int
    endpoints: list[Endpoint]

    def claims(self) -> dict[str, Any]:
        """Valid claims, fresh in time, that every endpoint of ``endpoints`` admits."""
        now = int(time.time())
        return {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": self.account_id,
            "client_id": "flotilla-login",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "roles": ["admin", "customer"],
            "scope": "",
        }


@dataclass(frozen=True)
class Keys:
    """The platform's signing keys, and keys nobody trusts."""

    platform: Path
    foreign: Path  # key-a.pem and stranger.pem, keys of the attacker

    def private(self, *, foreign: bool = False) -> RSAPrivateKey:
        """The key ``key-a``: the platform's own, or the attacker's."""
        return private_key(self.foreign if foreign else self.platform)

    @property
    def kid(self) -> str:
        """The kid of the platform's signing key, as its JWKS publishes it."""
        return kid_of(self.platform)

    def public_pem(self) -> bytes:
        """The platform's public key as PEM: what an attacker can read from the JWKS."""
        return (
            self.private()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )


@pytest.fixture(scope="module")
def target(platform: Platform) -> Target:
    account = platform.register()
    product = platform.create_product(stock=10_000)
    endpoints = [
        Endpoint("users", "GET", "/users/me"),
        Endpoint("users", "PATCH", "/users/me", {"name": "Still Me"}),
        Endpoint(
            "catalog",
            "POST",
            "/products",
            {"name": "Attack check", "price_cents": 1, "currency": "EUR", "stock": 1},
            admitted=201,
        ),
        Endpoint("orders", "GET", "/orders"),
        Endpoint("orders", "POST", "/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}, 201),
    ]
    return Target(str(account["id"]), int(product["id"]), endpoints)


@pytest.fixture(scope="module")
def keys(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    foreign = tmp_path_factory.mktemp("foreign-keys")
    write_private_key(foreign / "key-a.pem", generate_key())
    write_private_key(foreign / "stranger.pem", generate_key())
    return Keys(platform.keys_dir, foreign)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWS in compact form, signed by ``sign`` however the attacker likes."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def tampered(keys: Keys, claims: dict[str, Any]) -> str:
    """A customer's genuine token whose payload now says admin: the original signature kept."""
    genuine = signed_token(keys.platform, **{**claims, "roles": ["customer"]})
    header, _payload, signature = genuine.split(".")
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


def embedded_key(keys: Keys, claims: dict[str, Any]) -> str:
    """Signed by the attacker, who offers the key to check it with in the header itself."""
    private = keys.private(foreign=True)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    headers = {"kid": keys.kid, "typ": "at+jwt", "jwk": jwk, "jku": "https://evil.example/jwks.json"}
    return jwt.encode(claims, private, algorithm="RS256", headers=headers)


def without_expiry(keys: Keys, claims: dict[str, Any]) -> str:
    """Signed with the platform's own key, but good forever."""
    forever = {name: value for name, value in claims.items() if name != "exp"}
    return jwt.encode(forever, keys.private(), algorithm="RS256", headers={"kid": keys.kid, "typ": "at+jwt"})


def shifted(claims: dict[str, Any], **changes: int) -> dict[str, Any]:
    """``claims`` with time claims moved by the given seconds from now."""
    now = int(time.time())
    return {**claims, **{name: now + offset for name, offset in changes.items()}}


Forgery = Callable[[Keys, dict[str, Any]], str]
FORGERIES: dict[str, Forgery] = {
    "alg none": lambda keys, claims: compact(
        {"alg": "none", "typ": "at+jwt", "kid": keys.kid}, claims, lambda _: b""
    ),
    "HS256 keyed with the RSA public key": lambda keys, claims: compact(
        {"alg": "HS256", "typ": "at+jwt", "kid": keys.kid},
        claims,
        lambda data: hmac.new(keys.public_pem(), data, hashlib.sha256).digest(),
    ),
    "expired": lambda keys, claims: signed_token(keys.platform, **shifted(claims, iat=-600, exp=-60)),
    "not yet valid": lambda keys, claims: signed_token(keys.platform, **shifted(claims, nbf=300)),
    "no expiry": without_expiry,
    "wrong issuer": lambda keys, claims: signed_token(
        keys.platform, **{**claims, "iss": "https://evil.example"}
    ),
    "wrong audience": lambda keys, claims: signed_token(
        keys.platform, **{**claims, "aud": "another-service"}
    ),
    "unknown kid": lambda keys, claims: signed_token(keys.foreign, "stranger", **claims),
    "foreign key under a known kid": lambda keys, claims: signed_token(keys.foreign, kid=keys.kid, **claims),
    "typed JWT, not at+jwt (an ID token, say)": lambda keys, claims: signed_token(
        keys.platform, typ="JWT", **claims
    ),
    "untyped": lambda keys, claims: signed_token(keys.platform, typ=None, **claims),
    "no client_id (RFC 9068)": lambda keys, claims: signed_token(
        keys.platform, **{**claims, "client_id": None}
    ),
    "no jti (RFC 9068)": lambda keys, claims: signed_token(keys.platform, **{**claims, "jti": None}),
    "attacker's key embedded as jwk and jku": embedded_key,
    "tampered payload": tampered,
    "truncated signature": lambda keys, claims: signed_token(keys.platform, **claims)[:-8],
    "malformed": lambda keys, claims: "not.a.jwt",
}


# What each forgery must be refused for: the check it targets, not an earlier one by accident.
REASONS = {
    "alg none": "algorithm",
    "HS256 keyed with the RSA public key": "algorithm",
    "expired": "expired",
    "not yet valid": "not valid yet",
    "no expiry": "lacks a required claim",
    "wrong issuer": "issuer",
    "wrong audience": "audience",
    "unknown kid": "signing key is not known",
    "foreign key under a known kid": "signature",
    "typed JWT, not at+jwt (an ID token, say)": "typ at+jwt",
    "untyped": "typ at+jwt",
    "no client_id (RFC 9068)": "lacks a required claim",
    "no jti (RFC 9068)": "lacks a required claim",
    "attacker's key embedded as jwk and jku": "signature",
    "tampered payload": "signature",
    "truncated signature": "malformed",  # its base64 no longer decodes
    "malformed": "malformed",
}
# Every detail is one of the kit's fixed texts: no exception's text (which may echo input) leaks.
FIXED_DETAILS = {text for _kind, text in REFUSALS} | {refusal(NotAnAccessToken()), refusal(jwt.DecodeError())}


def invalid_token_detail(response: requests.Response, where: str) -> str:
    """Assert an RFC 6750 invalid_token refusal as a problem document; return its detail."""
    assert response.status_code == 401, f"{where}: {response.status_code} {response.text}"
    assert 'error="invalid_token"' in response.headers.get("WWW-Authenticate", ""), where
    assert response.headers["Content-Type"] == PROBLEM, where
    problem = response.json()
    assert problem["status"] == 401, where
    return str(problem["detail"])


def test_the_untampered_claims_are_admitted_everywhere(
    platform: Platform, target: Target, keys: Keys, case: Case
) -> None:
    token = signed_token(keys.platform, **target.claims())
    for endpoint in target.endpoints:
        response = endpoint.send(platform, token)
        case.tried()
        assert response.status_code == endpoint.admitted, f"{endpoint}: {response.text}"
    case.saw(f"admitted at {len(target.endpoints)} endpoints of 3 services")


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_token_is_refused_everywhere(
    platform: Platform, target: Target, keys: Keys, forgery: str, case: Case
) -> None:
    token = FORGERIES[forgery](keys, target.claims())
    details = set()
    for endpoint in target.endpoints:
        response = endpoint.send(platform, token)
        case.tried()
        details.add(invalid_token_detail(response, f"{forgery} at {endpoint}"))
    assert details <= FIXED_DETAILS, details
    assert all(REASONS[forgery] in detail for detail in details), details
    case.saw(f"401 at {len(target.endpoints)} endpoints: {' / '.join(sorted(details))}")


def test_a_remembered_token_with_a_changed_byte_is_refused(
    platform: Platform, target: Target, keys: Keys, case: Case
) -> None:
    token = signed_token(keys.platform, **target.claims())
    for _ in range(3):  # several connections, so both workers of each service remember it
        for endpoint in target.endpoints:
            case.tried()
            assert endpoint.send(platform, token).status_code == endpoint.admitted, endpoint
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for changed in (f"{header}.{payload}.{flipped}", f"{header}.{payload}x.{signature}"):
        for endpoint in target.endpoints:
            case.tried()
            invalid_token_detail(endpoint.send(platform, changed), f"changed byte at {endpoint}")
    case.saw("a remembered token with one byte changed is verified afresh and refused")


def test_a_remembered_token_is_refused_once_it_expires(
    platform: Platform, target: Target, keys: Keys, case: Case
) -> None:
    expires = int(time.time()) + 3
    token = signed_token(keys.platform, **{**target.claims(), "exp": expires})
    # Reads only: they answer well inside the token's few seconds.
    endpoints = [endpoint for endpoint in target.endpoints if endpoint.method == "GET"]
    for _ in range(3):
        for endpoint in endpoints:
            case.tried()
            assert endpoint.send(platform, token).status_code == 200, endpoint
    time.sleep(max(0.0, expires + LEEWAY_SECONDS + 1 - time.time()))
    details = set()
    for _ in range(3):
        for endpoint in endpoints:
            case.tried()
            details.add(invalid_token_detail(endpoint.send(platform, token), f"expired at {endpoint}"))
    assert all("expired" in detail for detail in details), details
    case.saw(f"remembered, then 401 after exp + leeway: {' / '.join(sorted(details))}")


def test_a_valid_token_without_the_role_or_scope_is_403(
    platform: Platform, target: Target, case: Case
) -> None:
    customer = platform.customer_token()
    orders_client = platform.service_token("orders")  # reservations:write, no roles
    reporting_client = platform.service_token("reporting")  # reports:read only
    product = f"/products/{target.product_id}"
    reservation = {"key": uuid.uuid4().hex, "items": [{"product_id": target.product_id, "quantity": 1}]}
    refusals = [
        (
            customer,
            Endpoint(
                "catalog",
                "POST",
                "/products",
                {"name": "No", "price_cents": 1, "currency": "EUR", "stock": 1},
            ),
        ),
        (customer, Endpoint("catalog", "PATCH", product, {"stock": 0})),
        (customer, Endpoint("catalog", "DELETE", product)),
        (customer, Endpoint("catalog", "POST", "/reservations", reservation)),
        (reporting_client, Endpoint("catalog", "POST", "/reservations", reservation)),
        (orders_client, Endpoint("orders", "GET", "/orders")),
        (orders_client, Endpoint("orders", "POST", "/orders", {"items": reservation["items"]})),
    ]
    stock = platform.stock_of(target.product_id)
    for token, endpoint in refusals:
        response = endpoint.send(platform, token)
        case.tried()
        assert response.status_code == 403, f"{endpoint}: {response.status_code} {response.text}"
        assert 'error="insufficient_scope"' in response.headers.get("WWW-Authenticate", ""), endpoint
        assert response.headers["Content-Type"] == PROBLEM, endpoint
        assert "needs the" in response.json()["detail"], endpoint
    assert platform.stock_of(target.product_id) == stock
    case.saw(f"403 insufficient_scope at {len(refusals)} endpoints; the product untouched")


def test_a_token_of_a_deleted_account_stops_working_at_users(platform: Platform, case: Case) -> None:
    account = platform.register()
    token = platform.login(account["email"])
    me = f"{platform.users.url}/users/me"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.delete(me, headers=headers, timeout=10).status_code == 204
    case.tried()
    for method, body in (("GET", None), ("PATCH", {"name": "Ghost"}), ("DELETE", None)):
        case.tried()
        detail = invalid_token_detail(
            requests.request(method, me, json=body, headers=headers, timeout=10), f"{method} /users/me"
        )
    login = requests.post(
        f"{platform.users.url}/auth/login",
        json={"email": account["email"], "password": account["password"]},
        timeout=10,
    )
    case.tried()
    assert login.status_code == 401
    # The same email registered again is another account: the old token does not open it.
    again = platform.register(account["email"])
    assert again["id"] != account["id"]
    case.tried()
    invalid_token_detail(requests.get(me, headers=headers, timeout=10), "old token, email re-registered")
    # catalog and orders learn of it from the revocation list: test_revocation.py holds them to it.
    case.saw(f"401 at users at once ({detail})")


def test_a_wrong_client_secret_is_invalid_client(platform: Platform, case: Case) -> None:
    for client_id in (*platform.clients, "no-such-client"):
        response = client_token(platform, client_id, "definitely-not-the-secret")
        case.tried()
        assert response.status_code == 401, client_id
        assert response.json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    case.saw("401 invalid_client for every client and an unknown one")


def test_a_rotated_or_removed_client_secret_gets_no_token(
    platform: Platform, tmp_path: Path, case: Case
) -> None:
    billing, reporting = platform.clients["billing"], platform.clients["reporting"]
    assert client_token(platform, "reporting", reporting).status_code == 200
    rotated = secrets.token_urlsafe(24)
    env = {name: value for name, value in platform.users.env.items() if "_REPORTING_" not in name}
    env |= {"OAUTH_CLIENTS": "orders,billing", "OAUTH_CLIENT_BILLING_SECRET": rotated}
    try:
        ServiceProcess("users", env, tmp_path, port=platform.users.port).migrate()
        for client_id, secret in (("billing", billing), ("reporting", reporting)):
            response = client_token(platform, client_id, secret)
            case.tried()
            assert response.status_code == 401, f"{client_id}: {response.text}"
            assert response.json()["error"] == "invalid_client"
        case.tried()
        assert client_token(platform, "billing", rotated).status_code == 200
    finally:
        platform.users.migrate()  # the session's own clients again
    assert client_token(platform, "reporting", reporting).status_code == 200
    case.saw("old billing secret and removed reporting client: 401 invalid_client; rotated secret: 200")
