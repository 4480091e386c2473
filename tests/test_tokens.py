"""Client-credentials tokens, scopes, and key rotation through the JWKS."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from flotilla_users.keys import generate_key, write_private_key
from tests.support.platform import Platform
from tests.support.processes import ServiceProcess
from tests.support.tokens import client_token, kid_of


def test_client_credentials_token_carries_the_clients_scopes(platform: Platform) -> None:
    response = client_token(platform, "orders", platform.clients["orders"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "reservations:write"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "orders"
    assert claims["scope"] == "reservations:write"


def test_client_secret_in_the_form_body_works_too(platform: Platform) -> None:
    response = client_token(platform, "reporting", platform.clients["reporting"], in_body=True)
    assert response.status_code == 200
    assert response.json()["scope"] == "reports:read"


def test_a_scope_beyond_the_clients_is_invalid_scope(platform: Platform) -> None:
    response = client_token(platform, "reporting", platform.clients["reporting"], scope="reservations:write")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_an_unsupported_grant_is_refused(platform: Platform) -> None:
    response = client_token(platform, "orders", platform.clients["orders"], grant_type="password")
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_reservations_need_the_reservations_scope(platform: Platform) -> None:
    product = platform.create_product(stock=3)
    body = {"key": "scope-check", "items": [{"product_id": product["id"], "quantity": 1}]}
    reporting = client_token(platform, "reporting", platform.clients["reporting"]).json()["access_token"]
    refused = requests.post(
        f"{platform.catalog.url}/reservations",
        json=body,
        headers={"Authorization": f"Bearer {reporting}"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert "reservations:write" in refused.json()["detail"]
    customer = requests.post(
        f"{platform.catalog.url}/reservations",
        json=body,
        headers={"Authorization": f"Bearer {platform.customer_token()}"},
        timeout=10,
    )
    assert customer.status_code == 403
    orders = client_token(platform, "orders", platform.clients["orders"]).json()["access_token"]
    allowed = requests.post(
        f"{platform.catalog.url}/reservations",
        json=body,
        headers={"Authorization": f"Bearer {orders}"},
        timeout=10,
    )
    assert allowed.status_code == 201, allowed.text
    assert platform.stock_of(product["id"]) == 2


@pytest.fixture
def rotated_users(platform: Platform, tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    """A second users instance on the same database whose key directory gained a new key."""
    keys = tmp_path / "keys"
    shutil.copytree(platform.keys_dir, keys)
    write_private_key(keys / "key-b.pem", generate_key())
    rotated = ServiceProcess(
        "users", {**platform.users.env, "JWT_KEYS_DIR": str(keys), "JWT_ACTIVE_KID": "key-b"}, tmp_path
    )
    rotated.start()
    yield rotated, str(keys)
    rotated.stop()


def test_jwks_publishes_both_keys_and_old_tokens_verify_after_rotation(
    platform: Platform, rotated_users: tuple[ServiceProcess, str], tmp_path: Path
) -> None:
    rotated, keys = rotated_users
    kid_a, kid_b = kid_of(Path(keys), "key-a"), kid_of(Path(keys), "key-b")
    account = platform.register()
    old_token = platform.login(account["email"])
    assert jwt.get_unverified_header(old_token)["kid"] == kid_a

    jwks = requests.get(f"{rotated.url}/.well-known/jwks.json", timeout=10).json()
    assert sorted(key["kid"] for key in jwks["keys"]) == sorted([kid_a, kid_b])
    assert all(key["kty"] == "RSA" and key["alg"] == "RS256" for key in jwks["keys"])

    new_token = requests.post(
        f"{rotated.url}/auth/login",
        json={"email": account["email"], "password": account["password"]},
        timeout=10,
    ).json()["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == kid_b

    for token in (old_token, new_token):
        me = requests.get(f"{rotated.url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200, me.text

    # A catalog that trusts the rotated issuer verifies both through its JWKS (selected by kid).
    catalog = ServiceProcess("catalog", {**platform.catalog.env, "USERS_URL": rotated.url}, tmp_path)
    catalog.start()
    try:
        admin_old = platform.admin_token()
        admin_new = requests.post(
            f"{rotated.url}/auth/login",
            json={"email": platform.admin_email, "password": platform.admin_password},
            timeout=10,
        ).json()["access_token"]
        for token in (admin_old, admin_new):
            created = requests.post(
                f"{catalog.url}/products",
                json={"name": "Rotation check", "price_cents": 1, "currency": "EUR", "stock": 1},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert created.status_code == 201, created.text
    finally:
        catalog.stop()
