"""Products: public reads, admin-only writes."""

from __future__ import annotations

import requests

from tests.support.platform import Platform

NEW_PRODUCT = {"name": "Admin-made", "price_cents": 999, "currency": "EUR", "stock": 4}


def test_products_are_listed_and_read_without_a_token(platform: Platform) -> None:
    product = platform.create_product(stock=7, price_cents=1234)
    listing = requests.get(f"{platform.catalog.url}/products", params={"limit": 200}, timeout=10)
    assert listing.status_code == 200
    assert product["id"] in [item["id"] for item in listing.json()["items"]]
    one = requests.get(f"{platform.catalog.url}/products/{product['id']}", timeout=10).json()
    assert one == {**product, "stock": 7, "price_cents": 1234}
    assert isinstance(one["price_cents"], int)


def test_an_admin_creates_changes_and_withdraws_products(platform: Platform) -> None:
    headers = {"Authorization": f"Bearer {platform.admin_token()}"}
    created = requests.post(f"{platform.catalog.url}/products", json=NEW_PRODUCT, headers=headers, timeout=10)
    assert created.status_code == 201
    url = f"{platform.catalog.url}/products/{created.json()['id']}"
    changed = requests.patch(url, json={"stock": 9}, headers=headers, timeout=10)
    assert changed.status_code == 200
    assert changed.json()["stock"] == 9
    assert requests.delete(url, headers=headers, timeout=10).status_code == 204
    assert requests.get(url, timeout=10).status_code == 404


def test_a_customer_may_not_write_products(platform: Platform) -> None:
    headers = {"Authorization": f"Bearer {platform.customer_token()}"}
    product = platform.create_product(stock=1)
    url = f"{platform.catalog.url}/products/{product['id']}"
    assert (
        requests.post(
            f"{platform.catalog.url}/products", json=NEW_PRODUCT, headers=headers, timeout=10
        ).status_code
        == 403
    )
    assert requests.patch(url, json={"stock": 100}, headers=headers, timeout=10).status_code == 403
    assert requests.delete(url, headers=headers, timeout=10).status_code == 403
    assert platform.stock_of(product["id"]) == 1


def test_product_writes_without_a_token_are_401(platform: Platform) -> None:
    response = requests.post(f"{platform.catalog.url}/products", json=NEW_PRODUCT, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_unknown_product_is_a_404_problem(platform: Platform) -> None:
    response = requests.get(f"{platform.catalog.url}/products/999999", timeout=10)
    assert response.status_code == 404
    assert response.json()["type"].endswith("/product-not-found")
