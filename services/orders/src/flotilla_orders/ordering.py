"""Placing an order: idempotent by key, reserving stock all-or-nothing, never leaking it."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from flotilla_kit.db import utcnow
from flotilla_kit.http_client import UpstreamUnavailable
from flotilla_kit.problems import Problem
from flotilla_orders.catalog import Catalog, Refused, ReservationLost, UpstreamError
from flotilla_orders.metrics import ORDERS
from flotilla_orders.models import CONFIRMED, FAILED, PENDING, REJECTED, Order, OrderItem

POLL_SECONDS = 0.05


def fingerprint(lines: Sequence[tuple[int, int]]) -> str:
    """A digest of what was asked, to tell a replay from a reused key."""
    return hashlib.sha256(json.dumps(sorted(lines)).encode()).hexdigest()


class OrderPlacement:
    """Runs the order protocol against the catalog."""

    def __init__(self, session: Session, catalog: Catalog, *, replay_wait: float, stale_after: float) -> None:
        self.session = session
        self.catalog = catalog
        self.replay_wait = replay_wait
        self.stale_after = stale_after

    def place(self, user_id: str, key: str, items: Sequence[dict[str, Any]]) -> tuple[Order, bool]:
        """The order for ``(user_id, key)`` and whether it is a replay of an earlier request."""
        lines = sorted((int(item["product_id"]), int(item["quantity"])) for item in items)
        digest = fingerprint(lines)
        try:
            order = self._record(user_id, key, digest, lines)
        except IntegrityError:
            self.session.rollback()
            claimed = self._claim_existing(user_id, key, digest)
            if claimed is None:
                ORDERS.labels("replayed").inc()
                return self._load(user_id, key), True
            self._resume(claimed, lines)
            return claimed, False
        self._run(order, lines)
        return order, False

    def _record(self, user_id: str, key: str, digest: str, lines: Sequence[tuple[int, int]]) -> Order:
        """Store a new pending order and its lines in one transaction; the order as stored.

        Two statements (the lines in one ``INSERT``) without the ORM's unit of work; the order
        returned is built from the same values, so nothing is read back.
        """
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "idempotency_key": key,
            "fingerprint": digest,
            "status": PENDING,
            "attempt": 1,
            "created_at": now,
            "updated_at": now,
        }
        connection = self.session.connection()
        connection.execute(_INSERT_ORDER, values)
        rows = [{"order_id": values["id"], "product_id": p, "quantity": q} for p, q in lines]
        connection.execute(_INSERT_ORDER_ITEMS, rows)
        self.session.commit()
        order = Order(**values, total=None, currency=None, failure=None)
        order.items = [OrderItem(order_id=order.id, product_id=p, quantity=q) for p, q in lines]
        return order

    def _resume(self, order: Order, lines: Sequence[tuple[int, int]]) -> None:
        """Finish an order taken over from a failed or stalled request.

        The previous attempt's reservation may still hold or even have committed stock (a
        timeout can hide a success): reuse it unless it is gone, so stock is never taken twice.
        """
        try:
            previous = self.catalog.lookup(order.reservation_key)
        except (UpstreamUnavailable, UpstreamError) as problem:
            self._finish(order, FAILED, failure=problem)
            return
        if previous is None or previous["status"] == "released":
            order.attempt += 1
            self.session.commit()
        self._run(order, lines)

    def settle_stalled(self, limit: int = 100) -> int:
        """Finish orders whose request died mid-way (a crashed worker); returns how many."""
        stale_since = utcnow() - timedelta(seconds=self.stale_after)
        stalled = self.session.scalars(
            select(Order).where(Order.status == PENDING, Order.updated_at < stale_since).limit(limit)
        ).all()
        settled = 0
        for order in stalled:
            if self._take_over_stalled(order):
                self._resume(order, [(item.product_id, item.quantity) for item in order.items])
                settled += 1
        return settled

    def _load(self, user_id: str, key: str) -> Order:
        self.session.expire_all()
        return self.session.scalars(
            select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
        ).one()

    def _claim_existing(self, user_id: str, key: str, digest: str) -> Order | None:
        """Wait for a concurrent request with the same key; take over one that failed or stalled.

        Returns the order to run, or None when it already has a final outcome.
        """
        deadline = time.monotonic() + self.replay_wait
        while True:
            order = self._load(user_id, key)
            if order.fingerprint != digest:
                raise Problem(
                    422,
                    "idempotency-key-reused",
                    "This Idempotency-Key was used for a different order.",
                )
            if order.status in (CONFIRMED, REJECTED):
                return None
            if order.status == FAILED and self._take_over(order, {Order.status: FAILED}):
                return order
            stale_since = utcnow() - timedelta(seconds=self.stale_after)
            stalled = order.status == PENDING and order.updated_at < stale_since
            if stalled and self._take_over(
                order, {Order.status: PENDING, Order.updated_at: order.updated_at}
            ):
                return order
            if time.monotonic() >= deadline:
                raise Problem(
                    409,
                    "order-in-progress",
                    "An order with this Idempotency-Key is still being placed; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            self.session.rollback()
            time.sleep(POLL_SECONDS)

    def _take_over_stalled(self, order: Order) -> bool:
        """Take over a pending order nobody has touched since we read it."""
        return self._take_over(order, {Order.status: PENDING, Order.updated_at: order.updated_at})

    def _take_over(self, order: Order, expected: dict[Any, Any]) -> bool:
        """Atomically move the order back to pending if it is still as ``expected``."""
        conditions = [Order.id == order.id] + [column == value for column, value in expected.items()]
        values: dict[str, Any] = {"status": PENDING, "updated_at": utcnow(), "failure": None}
        result = self.session.execute(update(Order).where(*conditions).values(**values))
        self.session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self.session.refresh(order)
        return True

    def _run(self, order: Order, lines: Sequence[tuple[int, int]]) -> None:
        key = order.reservation_key
        try:
            reservation = self.catalog.reserve(key, lines)
            if reservation["status"] == "released":
                raise ReservationLost(key)
            if reservation["status"] != "committed":
                # An earlier attempt's reservation, only held: commit it now.
                self.catalog.commit(key)
        except Refused as refusal:
            self._finish(order, REJECTED, failure=refusal)
            return
        except (UpstreamUnavailable, UpstreamError, ReservationLost) as problem:
            self.catalog.release_quietly(key)
            self._finish(order, FAILED, failure=problem)
            return
        self._finish(order, CONFIRMED, reserved=reservation["items"])

    def _finish(
        self,
        order: Order,
        status: str,
        failure: Problem | None = None,
        reserved: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Store the outcome (and the lines' names and prices from the reservation) in one transaction.

        Core statements (the lines in one ``executemany``); the order in memory gets the same
        values as committed state, so the session has nothing left to flush.
        """
        prices = {int(item["product_id"]): item for item in reserved}
        lines = [
            {
                "b_order_id": order.id,
                "b_product_id": line.product_id,
                "b_name": prices[line.product_id]["name"],
                "b_unit_price_cents": int(prices[line.product_id]["unit_price_cents"]),
            }
            for line in order.items
            if line.product_id in prices
        ]
        values: dict[str, Any] = {
            "status": status,
            "updated_at": utcnow(),
            "failure": None if failure is None else {"status": failure.status, **failure.body()},
            "total": None,
            "currency": None,
        }
        if lines:
            values["total"] = sum(
                line.quantity * int(prices[line.product_id]["unit_price_cents"]) for line in order.items
            )
            values["currency"] = reserved[0]["currency"]
        connection = self.session.connection()
        outcome = {f"b_{name}": value for name, value in values.items()}
        connection.execute(_FINISH_ORDER, {"b_id": order.id, **outcome})
        if lines:
            connection.execute(_PRICE_LINE, lines)
        self.session.commit()
        for name, value in values.items():
            set_committed_value(order, name, value)
        for line in order.items:
            for name, value in _priced(prices.get(line.product_id, {})).items():
                set_committed_value(line, name, value)
        ORDERS.labels(status).inc()


_ORDERS = cast(Table, Order.__table__)
_ORDER_ITEMS = cast(Table, OrderItem.__table__)
# Built once: a statement object reused is compiled and cache-keyed once, not per request.
_INSERT_ORDER = insert(_ORDERS)
_INSERT_ORDER_ITEMS = insert(_ORDER_ITEMS)
_OUTCOME = ("status", "updated_at", "failure", "total", "currency")
_FINISH_ORDER = (
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _OUTCOME})
)
_PRICE_LINE = (
    update(_ORDER_ITEMS)
    .where(
        _ORDER_ITEMS.c.order_id == bindparam("b_order_id"),
        _ORDER_ITEMS.c.product_id == bindparam("b_product_id"),
    )
    .values(name=bindparam("b_name"), unit_price_cents=bindparam("b_unit_price_cents"))
)


def _priced(item: dict[str, Any]) -> dict[str, Any]:
    """A reserved line's name and unit price, as an order line stores them."""
    return {"name": item["name"], "unit_price_cents": int(item["unit_price_cents"])} if item else {}


def failure_problem(order: Order) -> Problem:
    """The problem a rejected or failed order answers with (the same on every replay)."""
    failure = dict(order.failure or {})
    status = int(failure.pop("status", 500))
    slug = str(failure.pop("type", "order-failed")).rsplit("/", 1)[-1]
    detail = str(failure.pop("detail", "The order could not be placed."))
    title = failure.pop("title", None)
    headers = {"Retry-After": "1"} if status == 503 else None
    return Problem(status, slug, detail, title=title, headers=headers, order_id=order.id, **failure)
