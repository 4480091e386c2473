"""Catalog reservations as other services use them: ownership, state changes, bounds."""

from __future__ import annotations

import uuid

import requests

from tests.support.platform import Platform


def _as(platform: Platform, client_id: str) -> dict[str, str]:
    token = platform.service_token(client_id)
    return {"Authorization": f"Bearer {token}"}


def test_a_reservation_belongs_to_the_client_that_made_it(platform: Platform) -> None:
    product = platform.create_product(stock=5)
    key = f"owned-{uuid.uuid4().hex}"
    url = f"{platform.catalog.url}/reservations"
    body = {"key": key, "items": [{"product_id": product["id"], "quantity": 2}]}
    assert requests.post(url, json=body, headers=_as(platform, "orders"), timeout=10).status_code == 201
    other = _as(platform, "billing")
    assert requests.get(f"{url}/{key}", headers=other, timeout=10).status_code == 404
    assert requests.post(f"{url}/{key}/commit", headers=other, timeout=10).status_code == 404
    assert requests.post(f"{url}/{key}/release", headers=other, timeout=10).status_code == 404
    assert requests.post(url, json=body, headers=other, timeout=10).status_code == 409
    assert platform.stock_of(product["id"]) == 3


def test_release_gives_stock_back_once_and_blocks_a_late_commit(platform: Platform) -> None:
    product = platform.create_product(stock=5)
    key = f"release-{uuid.uuid4().hex}"
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    body = {"key": key, "items": [{"product_id": product["id"], "quantity": 4}]}
    assert requests.post(url, json=body, headers=headers, timeout=10).status_code == 201
    assert platform.stock_of(product["id"]) == 1
    for _ in range(3):
        released = requests.post(f"{url}/{key}/release", headers=headers, timeout=10)
        assert released.status_code == 200
        assert released.json()["status"] == "released"
    assert platform.stock_of(product["id"]) == 5
    late = requests.post(f"{url}/{key}/commit", headers=headers, timeout=10)
    assert late.status_code == 409
    assert late.json()["type"].endswith("/reservation-released")


def test_releasing_an_unknown_key_blocks_a_later_reservation_under_it(platform: Platform) -> None:
    product = platform.create_product(stock=5)
    key = f"tombstone-{uuid.uuid4().hex}"
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    assert requests.post(f"{url}/{key}/release", headers=headers, timeout=10).status_code == 200
    late = requests.post(
        url,
        json={"key": key, "items": [{"product_id": product["id"], "quantity": 1}]},
        headers=headers,
        timeout=10,
    )
    assert late.json()["status"] == "released"
    assert platform.stock_of(product["id"]) == 5


def test_a_committed_reservation_cannot_be_released(platform: Platform) -> None:
    product = platform.create_product(stock=5)
    key = f"commit-{uuid.uuid4().hex}"
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    body = {"key": key, "items": [{"product_id": product["id"], "quantity": 1}]}
    assert requests.post(url, json=body, headers=headers, timeout=10).status_code == 201
    assert requests.post(f"{url}/{key}/commit", headers=headers, timeout=10).json()["status"] == "committed"
    assert requests.post(f"{url}/{key}/commit", headers=headers, timeout=10).status_code == 200
    assert requests.post(f"{url}/{key}/release", headers=headers, timeout=10).status_code == 409
    assert platform.stock_of(product["id"]) == 4


def test_out_of_range_identifiers_are_client_errors(platform: Platform) -> None:
    assert requests.get(f"{platform.catalog.url}/products/3000000000", timeout=10).status_code == 404
    assert (
        requests.get(f"{platform.catalog.url}/products", params={"offset": 10**20}, timeout=10).status_code
        == 422
    )
    headers = _as(platform, "orders")
    long_key = "k" * 300
    assert (
        requests.post(
            f"{platform.catalog.url}/reservations/{long_key}/release", headers=headers, timeout=10
        ).status_code
        == 404
    )
    huge = platform.order(platform.customer_token(), [{"product_id": 3_000_000_000, "quantity": 1}])
    assert huge.status_code == 422
