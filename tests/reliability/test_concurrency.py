"""Concurrency: a burst of orders on scarce stock, and a burst of replays of one key.

The requests of a burst wait at a barrier and are released together; the outcome is checked
in the answers and in PostgreSQL.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable

import requests

from tests.support.cases import Case
from tests.support.platform import Platform
from tests.support.postgres import query


def burst(count: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    """``count`` threads, released together by a barrier, each calling ``send(n)`` once."""
    barrier = threading.Barrier(count)
    answers: list[requests.Response | BaseException | None] = [None] * count

    def run(n: int) -> None:
        barrier.wait(timeout=60)
        try:
            answers[n] = send(n)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            answers[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failures = [answer for answer in answers if not isinstance(answer, requests.Response)]
    assert not failures, failures[:3]
    return [answer for answer in answers if isinstance(answer, requests.Response)]


class StockWatch:
    """Polls a product's stock in a thread until stopped; keeps every reading."""

    def __init__(self, platform: Platform, product_id: int) -> None:
        self.platform = platform
        self.product_id = product_id
        self.readings: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StockWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.readings.append(self.platform.stock_of(self.product_id))
            self._stop.wait(0.01)


def orders_of(platform: Platform, product_id: int) -> dict[str, int]:
    """How many orders of the product the orders database holds, by order status."""
    rows = query(
        platform.database_urls["orders"],
        "SELECT o.status, count(*) FROM orders o JOIN order_items i ON i.order_id = o.id "
        "WHERE i.product_id = %s GROUP BY o.status",
        product_id,
    )
    return {str(status): int(str(count)) for status, count in rows}


def test_hundred_concurrent_orders_on_stock_ten_sell_exactly_ten(platform: Platform, case: Case) -> None:
    product = platform.create_product(stock=10)
    tokens = [platform.customer_token() for _ in range(5)]
    items = [{"product_id": product["id"], "quantity": 1}]
    with StockWatch(platform, product["id"]) as watch:
        answers = burst(100, lambda n: platform.order(tokens[n % len(tokens)], items, timeout=120))
    case.tried(len(answers))
    outcomes = Counter(answer.status_code for answer in answers)
    case.saw(f"answers {dict(outcomes)}")
    assert outcomes == {201: 10, 409: 90}, [a.text for a in answers if a.status_code not in (201, 409)][:3]
    assert {a.json()["status"] for a in answers if a.status_code == 201} == {"confirmed"}
    refusals = [a for a in answers if a.status_code == 409]
    assert {a.headers["Content-Type"] for a in refusals} == {"application/problem+json"}
    assert {a.json()["type"].rsplit("/", 1)[-1] for a in refusals} == {"insufficient-stock"}

    case.saw(f"{len(watch.readings)} stock readings during the burst, lowest {min(watch.readings)}")
    assert min(watch.readings) >= 0
    assert platform.stock_of(product["id"]) == 0
    stock = query(
        platform.database_urls["catalog"], "SELECT stock FROM products WHERE id = %s", product["id"]
    )
    assert stock == [(0,)]
    assert platform.reserved_quantities(product["id"]) == {"committed": 10}
    assert orders_of(platform, product["id"]) == {"confirmed": 10, "rejected": 90}
    case.saw("PostgreSQL: stock 0, 10 committed in reservations, 10 confirmed and 90 rejected orders")


def test_ten_concurrent_replays_of_one_key_make_one_order(platform: Platform, case: Case) -> None:
    product = platform.create_product(stock=50)
    token = platform.customer_token()
    items = [{"product_id": product["id"], "quantity": 1}]
    key = f"same-key-burst-{uuid.uuid4().hex}"
    answers = burst(10, lambda _: platform.order(token, items, key=key, timeout=120))
    case.tried(len(answers))
    assert {answer.status_code for answer in answers} == {201}, [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    replayed = sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers)
    case.saw(f"10 answers, 1 order; {replayed} marked as replays")
    assert replayed == 9
    assert platform.stock_of(product["id"]) == 49
    stored = query(platform.database_urls["orders"], "SELECT id FROM orders WHERE idempotency_key = %s", key)
    assert stored == [(answers[0].json()["id"],)]
    assert platform.reserved_quantities(product["id"]) == {"committed": 1}
    case.saw("PostgreSQL: one order for the key, 1 committed in reservations")
