"""Catalog reservations as other services use them: ownership, state changes, bounds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import requests

from tests.support.platform import Platform
from tests.support.postgres import query


def _as(platform: Platform, client_id: str) -> dict[str, str]:
    token = platform.service_token(client_id)
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Held:
    """A reservation the orders client has just made: its product, key and URL, the client's headers."""

    product_id: int
    key: str
    url: str
    headers: dict[str, str]


def _hold(platform: Platform, label: str, quantity: int, stock: int = 5) -> Held:
    """Reserve ``quantity`` of a new product of ``stock`` as orders, under a key named ``label``."""
    product = platform.create_product(stock=stock)
    key = f"{label}-{uuid.uuid4().hex}"
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    body = {"key": key, "items": [{"product_id": product["id"], "quantity": quantity}]}
    made = requests.post(url, json=body, headers=headers, timeout=10)
    assert made.status_code == 201, made.text
    return Held(product["id"], key, f"{url}/{key}", headers)


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
    held = _hold(platform, "release", quantity=4)
    assert platform.stock_of(held.product_id) == 1
    for _ in range(3):
        released = requests.post(f"{held.url}/release", headers=held.headers, timeout=10)
        assert released.status_code == 200
        assert released.json()["status"] == "released"
    assert platform.stock_of(held.product_id) == 5
    late = requests.post(f"{held.url}/commit", headers=held.headers, timeout=10)
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
    held = _hold(platform, "commit", quantity=1)
    commit, release = f"{held.url}/commit", f"{held.url}/release"
    assert requests.post(commit, headers=held.headers, timeout=10).json()["status"] == "committed"
    assert requests.post(commit, headers=held.headers, timeout=10).status_code == 200
    assert requests.post(release, headers=held.headers, timeout=10).status_code == 409
    assert platform.stock_of(held.product_id) == 4


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


def _expire(platform: Platform, key: str) -> None:
    """Move a reservation's expiry into the past, as if its holder had never come back."""
    query(
        platform.database_urls["catalog"],
        "UPDATE reservations SET expires_at = now() - interval '1 minute' WHERE key = %s",
        key,
    )


def test_a_reservation_made_with_commit_is_committed_at_once_and_replays_unchanged(
    platform: Platform,
) -> None:
    product = platform.create_product(stock=5, price_cents=1250)
    key = f"commit-at-once-{uuid.uuid4().hex}"
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    body = {"key": key, "items": [{"product_id": product["id"], "quantity": 2}], "commit": True}
    made = requests.post(url, json=body, headers=headers, timeout=10)
    assert made.status_code == 201, made.text
    reservation = made.json()
    assert reservation["status"] == "committed"
    assert reservation["items"] == [
        {
            "product_id": product["id"],
            "quantity": 2,
            "name": product["name"],
            "unit_price_cents": 1250,
            "currency": "EUR",
        }
    ]
    assert platform.stock_of(product["id"]) == 3
    read = requests.get(f"{url}/{key}", headers=headers, timeout=10)
    assert read.status_code == 200
    assert read.json() == reservation  # the answer made without reading back is what was stored
    replay = requests.post(url, json=body, headers=headers, timeout=10)
    assert replay.status_code == 200
    assert replay.json() == reservation
    assert platform.stock_of(product["id"]) == 3
    released = requests.post(f"{url}/{key}/release", headers=headers, timeout=10)
    assert released.status_code == 409
    assert released.json()["type"].endswith("/reservation-committed")
    assert platform.stock_of(product["id"]) == 3
    assert platform.reserved_quantities(product["id"]) == {"committed": 2}


def test_mixed_currencies_are_refused_only_when_asked_and_then_take_no_stock(platform: Platform) -> None:
    euros = platform.create_product(stock=5)
    dollars = platform.create_product(5, price_cents=700, currency="USD")
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    items = [{"product_id": euros["id"], "quantity": 1}, {"product_id": dollars["id"], "quantity": 2}]
    key = f"one-currency-{uuid.uuid4().hex}"
    refused = requests.post(
        url, json={"key": key, "items": items, "same_currency": True}, headers=headers, timeout=10
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("/mixed-currencies")
    assert platform.stock_of(euros["id"]) == 5
    assert platform.stock_of(dollars["id"]) == 5
    assert requests.get(f"{url}/{key}", headers=headers, timeout=10).status_code == 404  # nothing kept
    accepted = requests.post(url, json={"key": key, "items": items}, headers=headers, timeout=10)
    assert accepted.status_code == 201, accepted.text
    assert [item["currency"] for item in accepted.json()["items"]] == ["EUR", "USD"]
    assert platform.stock_of(euros["id"]) == 4
    assert platform.stock_of(dollars["id"]) == 3


def test_an_expired_reservation_cannot_be_committed(platform: Platform) -> None:
    held = _hold(platform, "expired", quantity=2)
    _expire(platform, held.key)
    late = requests.post(f"{held.url}/commit", headers=held.headers, timeout=10)
    assert late.status_code == 409, late.text
    assert late.json()["type"].endswith("/reservation-released")
    assert requests.get(held.url, headers=held.headers, timeout=10).json()["status"] != "committed"


def test_a_reservation_short_of_stock_first_releases_expired_ones(platform: Platform) -> None:
    product = platform.create_product(stock=2)
    url = f"{platform.catalog.url}/reservations"
    headers = _as(platform, "orders")
    first, second = (f"{name}-{uuid.uuid4().hex}" for name in ("expiring", "after"))
    # One kept-alive connection reaches one worker: the second reservation comes right after the
    # first one's periodic expiry, so only the release on a shortage can free the stock.
    with requests.Session() as http:
        items = [{"product_id": product["id"], "quantity": 2}]
        assert (
            http.post(url, json={"key": first, "items": items}, headers=headers, timeout=10).status_code
            == 201
        )
        _expire(platform, first)
        made = http.post(url, json={"key": second, "items": items}, headers=headers, timeout=10)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "held"
    assert requests.get(f"{url}/{first}", headers=headers, timeout=10).json()["status"] == "released"
    assert platform.stock_of(product["id"]) == 0
    assert platform.reserved_quantities(product["id"]) == {"released": 2, "held": 2}
