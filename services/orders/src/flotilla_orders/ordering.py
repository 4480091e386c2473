"""Placing an order: idempotent by key, reserving stock all-or-nothing, never leaking it."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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
        order = Order(user_id=user_id, idempotency_key=key, fingerprint=digest, status=PENDING)
        order.items = [OrderItem(product_id=p, quantity=q) for p, q in lines]
        self.session.add(order)
        try:
            self.session.commit()
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
            currencies = {item["currency"] for item in reservation["items"]}
            if len(currencies) != 1:
                self.catalog.release_quietly(key)
                self._finish(
                    order,
                    REJECTED,
                    failure=Problem(
                        422,
                        "mixed-currencies",
                        "Products priced in different currencies cannot share an order.",
                    ),
                )
                return
            if reservation["status"] != "committed":
                self.catalog.commit(key)
        except Refused as refusal:
            self._finish(order, REJECTED, failure=refusal)
            return
        except (UpstreamUnavailable, UpstreamError, ReservationLost) as problem:
            self.catalog.release_quietly(key)
            self._finish(order, FAILED, failure=problem)
            return
        prices = {item["product_id"]: item for item in reservation["items"]}
        for line in order.items:
            line.name = prices[line.product_id]["name"]
            line.unit_price_cents = prices[line.product_id]["unit_price_cents"]
        order.total = sum(line.quantity * (line.unit_price_cents or 0) for line in order.items)
        order.currency = currencies.pop()
        self._finish(order, CONFIRMED)

    def _finish(self, order: Order, status: str, failure: Problem | None = None) -> None:
        order.status = status
        order.updated_at = utcnow()
        order.failure = None if failure is None else {"status": failure.status, **failure.body()}
        self.session.commit()
        ORDERS.labels(status).inc()


def failure_problem(order: Order) -> Problem:
    """The problem a rejected or failed order answers with (the same on every replay)."""
    failure = dict(order.failure or {})
    status = int(failure.pop("status", 500))
    slug = str(failure.pop("type", "order-failed")).rsplit("/", 1)[-1]
    detail = str(failure.pop("detail", "The order could not be placed."))
    title = failure.pop("title", None)
    headers = {"Retry-After": "1"} if status == 503 else None
    return Problem(status, slug, detail, title=title, headers=headers, order_id=order.id, **failure)
