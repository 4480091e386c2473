"""Orders: placement, read-back, idempotent replays, stock limits, a lost commit.

Concurrency and outages under load: tests/reliability (test_concurrency.py, test_faults.py).
"""

from __future__ import annotations

import json
import time
import uuid

import requests

from tests.support.platform import Platform
from tests.support.postgres import query


def test_an_order_is_created_and_read_back(platform: Platform) -> None:
    product = platform.create_product(stock=10, price_cents=1250)
    token = platform.customer_token()
    response = platform.order(token, [{"product_id": product["id"], "quantity": 3}])
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "confirmed"
    assert order["total"] == 3750
    assert order["currency"] == "EUR"
    assert order["items"] == [
        {"product_id": product["id"], "quantity": 3, "name": product["name"], "unit_price_cents": 1250}
    ]
    assert response.headers["Location"] == f"/orders/{order['id']}"
    headers = {"Authorization": f"Bearer {token}"}
    read = requests.get(f"{platform.orders.url}/orders/{order['id']}", headers=headers, timeout=10)
    assert read.status_code == 200
    assert read.json() == order
    listing = requests.get(f"{platform.orders.url}/orders", headers=headers, timeout=10).json()
    assert [item["id"] for item in listing["items"]] == [order["id"]]
    assert platform.stock_of(product["id"]) == 7


def test_another_customer_cannot_read_my_order(platform: Platform) -> None:
    product = platform.create_product(stock=1)
    order = platform.order(platform.customer_token(), [{"product_id": product["id"], "quantity": 1}]).json()
    stranger = {"Authorization": f"Bearer {platform.customer_token()}"}
    response = requests.get(f"{platform.orders.url}/orders/{order['id']}", headers=stranger, timeout=10)
    assert response.status_code == 404


def test_replaying_an_idempotency_key_returns_the_same_order(platform: Platform) -> None:
    product = platform.create_product(stock=10)
    token = platform.customer_token()
    items = [{"product_id": product["id"], "quantity": 2}]
    first = platform.order(token, items, key="replay-key-1")
    second = platform.order(token, items, key="replay-key-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert platform.stock_of(product["id"]) == 8


def test_reusing_a_key_for_different_items_is_refused(platform: Platform) -> None:
    product = platform.create_product(stock=10)
    token = platform.customer_token()
    assert (
        platform.order(token, [{"product_id": product["id"], "quantity": 1}], key="k-reuse").status_code
        == 201
    )
    response = platform.order(token, [{"product_id": product["id"], "quantity": 2}], key="k-reuse")
    assert response.status_code == 422
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert platform.stock_of(product["id"]) == 9


def test_insufficient_stock_is_409_and_takes_nothing(platform: Platform) -> None:
    scarce = platform.create_product(stock=2)
    plenty = platform.create_product(stock=10)
    response = platform.order(
        platform.customer_token(),
        [{"product_id": plenty["id"], "quantity": 1}, {"product_id": scarce["id"], "quantity": 3}],
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"].endswith("/insufficient-stock")
    assert problem["product_id"] == scarce["id"]
    assert problem["available"] == 2
    assert platform.stock_of(scarce["id"]) == 2
    assert platform.stock_of(plenty["id"]) == 10


def test_an_unknown_product_is_422(platform: Platform) -> None:
    response = platform.order(platform.customer_token(), [{"product_id": 987654, "quantity": 1}])
    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-product")


def _wait_for_order(
    platform: Platform, token: str, items: list[dict[str, int]], key: str
) -> requests.Response:
    """Replay until the catalog's circuit lets calls through again (bounded)."""
    deadline = time.monotonic() + 30
    while True:
        response = platform.order(token, items, key=key)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def test_a_large_order_total_is_kept_exactly(platform: Platform) -> None:
    product = platform.create_product(stock=5, price_cents=1_000_000_000)
    response = platform.order(platform.customer_token(), [{"product_id": product["id"], "quantity": 3}])
    assert response.status_code == 201, response.text
    assert response.json()["total"] == 3_000_000_000


def test_retrying_a_failed_order_whose_stock_was_committed_takes_it_only_once(platform: Platform) -> None:
    """A commit can succeed while its answer is lost; the retry must reuse it, not reserve again."""
    product = platform.create_product(stock=6)
    token = platform.customer_token()
    items = [{"product_id": product["id"], "quantity": 2}]
    key = f"lost-commit-{uuid.uuid4().hex}"
    platform.catalog.stop()
    try:
        failed = platform.order(token, items, key=key)
    finally:
        platform.catalog.start()
    assert failed.status_code == 503
    order_id = failed.json()["order_id"]
    # What the catalog would hold had the first attempt's commit gone through unseen.
    basic = {"Authorization": f"Bearer {platform.service_token()}"}
    reservation_key = f"order-{order_id}-1"
    created = requests.post(
        f"{platform.catalog.url}/reservations",
        json={"key": reservation_key, "items": items},
        headers=basic,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert requests.post(
        f"{platform.catalog.url}/reservations/{reservation_key}/commit", headers=basic, timeout=10
    ).ok
    assert platform.stock_of(product["id"]) == 4
    retried = _wait_for_order(platform, token, items, key)
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == order_id
    assert platform.stock_of(product["id"]) == 4


def _catalog_reservation_status(platform: Platform, key: str) -> str | None:
    """The status of the catalog's reservation ``key`` (SQL), None when there is none."""
    rows = query(platform.database_urls["catalog"], "SELECT status FROM reservations WHERE key = %s", key)
    return None if not rows else str(rows[0][0])


def test_an_order_in_two_currencies_is_refused_and_takes_no_stock(platform: Platform) -> None:
    euros = platform.create_product(stock=5)
    dollars = platform.create_product(5, price_cents=700, currency="USD")
    response = platform.order(
        platform.customer_token(),
        [{"product_id": euros["id"], "quantity": 1}, {"product_id": dollars["id"], "quantity": 1}],
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("/mixed-currencies")
    assert platform.stock_of(euros["id"]) == 5
    assert platform.stock_of(dollars["id"]) == 5
    assert _catalog_reservation_status(platform, f"order-{problem['order_id']}-1") is None


def test_an_order_takes_its_stock_in_one_catalog_call_and_leaves_it_committed(platform: Platform) -> None:
    product = platform.create_product(stock=4)
    request_id = f"one-call-{uuid.uuid4().hex}"
    response = platform.order(
        platform.customer_token(),
        [{"product_id": product["id"], "quantity": 3}],
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 201, response.text
    assert _catalog_reservation_status(platform, f"order-{response.json()['id']}-1") == "committed"
    assert platform.stock_of(product["id"]) == 1
    # The reservation is made committed: no separate commit call reaches the catalog.
    routes = {
        record["route"]
        for record in (json.loads(line) for line in platform.catalog.log_lines() if line.startswith("{"))
        if record.get("request_id") == request_id
    }
    assert routes == {"/reservations"}
