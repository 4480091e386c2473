"""Stock reservations: all-or-nothing, idempotent by key, never driving stock negative."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flotilla_catalog.metrics import RESERVATIONS
from flotilla_catalog.models import (
    COMMITTED,
    HELD,
    RELEASED,
    Product,
    Reservation,
    ReservationItem,
)
from flotilla_kit.db import insert_ignoring_conflicts, utcnow
from flotilla_kit.problems import Problem

EXPIRY_BATCH = 100


EXPIRY_INTERVAL_SECONDS = 5.0
"""How often a worker releases expired reservations before reserving (and always on a shortage)."""

_expiry_due_at = 0.0


def _lines(items: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((int(item["product_id"]), int(item["quantity"])) for item in items)


def _same_request(reservation: Reservation, items: Sequence[dict[str, Any]]) -> bool:
    held = sorted((item.product_id, item.quantity) for item in reservation.items)
    return (reservation.status == RELEASED and not reservation.items) or held == _lines(items)


@dataclass(frozen=True)
class NewReservation:
    """A reservation just made, as the API shows it, answered without reading it back."""

    key: str
    status: str
    expires_at: datetime
    items: list[dict[str, Any]]


_PRODUCTS = cast(Table, Product.__table__)
_RESERVATIONS = cast(Table, Reservation.__table__)
_RESERVATION_ITEMS = cast(Table, ReservationItem.__table__)
_TAKE_STOCK = (
    update(_PRODUCTS)
    .where(
        _PRODUCTS.c.id == bindparam("product_id"),
        _PRODUCTS.c.deleted_at.is_(None),
        _PRODUCTS.c.stock >= bindparam("quantity"),
    )
    .values(stock=_PRODUCTS.c.stock - bindparam("quantity"))
    .returning(_PRODUCTS.c.name, _PRODUCTS.c.price_cents, _PRODUCTS.c.currency)
)


_CLAIM_KEY: dict[str, Any] = {}


def _claim_key(session: Session) -> Any:
    """``INSERT .. ON CONFLICT DO NOTHING RETURNING key`` of a reservation, built once per dialect.

    A statement object reused is cache-keyed and compiled once; built per call, its cache key
    alone cost more than the round trip.
    """
    dialect = session.get_bind().dialect.name
    statement = _CLAIM_KEY.get(dialect)
    if statement is None:
        statement = insert_ignoring_conflicts(session, _RESERVATIONS).returning(_RESERVATIONS.c.key)
        _CLAIM_KEY[dialect] = statement
    return statement


@dataclass(frozen=True)
class Request:
    """What a reservation asks for: lines in product order, and how to take them."""

    key: str
    client_id: str
    lines: list[tuple[int, int]]
    ttl_seconds: int
    commit: bool = False
    same_currency: bool = False


def reserve(
    session: Session,
    *,
    key: str,
    client_id: str,
    items: Sequence[dict[str, Any]],
    ttl_seconds: int,
    commit: bool = False,
    same_currency: bool = False,
) -> tuple[Reservation | NewReservation, bool]:
    """Hold stock for every line or for none; returns the reservation and whether it is new.

    One transaction of 3 + lines statements: the reservation row (a replay when its key exists),
    one conditional ``UPDATE ... RETURNING`` per line (in product order, so that concurrent
    reservations lock rows in the same order), and the lines in one ``INSERT``. ``commit``
    makes it committed at once; ``same_currency`` refuses lines priced in several currencies.
    """
    _release_expired_when_due(session)
    request = Request(key, client_id, _lines(items), ttl_seconds, commit, same_currency)
    made = _try_reserve(session, request)
    if isinstance(made, tuple) and release_expired(session):
        # Short of stock: expired reservations were holding some. Try once more without them.
        made = _try_reserve(session, request)
    if isinstance(made, Reservation):
        return _replay(made, client_id, items), False
    if isinstance(made, NewReservation):
        RESERVATIONS.labels("reserved").inc()
        if commit:
            RESERVATIONS.labels("committed").inc()
        return made, True
    problem = _shortage(session, *made)
    RESERVATIONS.labels("insufficient_stock" if problem.status == 409 else "unknown_product").inc()
    raise problem


def _try_reserve(session: Session, request: Request) -> Reservation | NewReservation | tuple[int, int]:
    """The new reservation, the existing one under its key, or the line stock fell short for."""
    key, status = request.key, COMMITTED if request.commit else HELD
    expires_at = utcnow() + timedelta(seconds=request.ttl_seconds)
    connection = session.connection()
    created = connection.execute(
        _claim_key(session),
        {"key": key, "client_id": request.client_id, "status": status, "expires_at": expires_at},
    ).first()
    if created is None:
        # The key is taken (perhaps by a concurrent request that just committed): a replay.
        session.rollback()
        existing = session.get(Reservation, key)
        assert existing is not None, "a conflicting reservation disappeared"
        return existing
    reserved = []
    for product_id, quantity in request.lines:
        taken = connection.execute(_TAKE_STOCK, {"product_id": product_id, "quantity": quantity}).first()
        if taken is None:
            session.rollback()
            return product_id, quantity
        reserved.append(
            {
                "reservation_key": key,
                "product_id": product_id,
                "quantity": quantity,
                "name": taken.name,
                "unit_price_cents": taken.price_cents,
                "currency": taken.currency,
            }
        )
    if request.same_currency and len({line["currency"] for line in reserved}) > 1:
        session.rollback()
        RESERVATIONS.labels("mixed_currencies").inc()
        raise Problem(
            422, "mixed-currencies", "Products priced in different currencies cannot share one reservation."
        )
    connection.execute(insert(_RESERVATION_ITEMS), reserved)
    session.commit()
    return NewReservation(key=key, status=status, expires_at=expires_at, items=reserved)


def _release_expired_when_due(session: Session) -> None:
    """Release expired reservations at most every ``EXPIRY_INTERVAL_SECONDS`` in this worker."""
    global _expiry_due_at  # noqa: PLW0603 - one timestamp per worker; a race only runs it twice
    now = time.monotonic()
    if now >= _expiry_due_at:
        _expiry_due_at = now + EXPIRY_INTERVAL_SECONDS
        release_expired(session)


def _replay(reservation: Reservation, client_id: str, items: Sequence[dict[str, Any]]) -> Reservation:
    if reservation.client_id != client_id or not _same_request(reservation, items):
        raise Problem(
            409,
            "reservation-key-reused",
            f"Reservation key {reservation.key!r} was used for different items.",
        )
    return reservation


def _shortage(session: Session, product_id: int, quantity: int) -> Problem:
    product = session.get(Product, product_id)
    if product is None or product.deleted_at is not None:
        return Problem(
            422,
            "unknown-product",
            f"Product {product_id} does not exist.",
            product_id=product_id,
        )
    return Problem(
        409,
        "insufficient-stock",
        f"Only {product.stock} of product {product_id} in stock; {quantity} requested.",
        product_id=product_id,
        available=product.stock,
        requested=quantity,
    )


def _transition(session: Session, key: str, to_status: str) -> bool:
    """Move a held reservation to ``to_status``; False when it was not held (someone else won)."""
    result = session.execute(
        update(Reservation)
        .where(Reservation.key == key, Reservation.status == HELD)
        .values(status=to_status, updated_at=utcnow())
    )
    changed: int = result.rowcount  # type: ignore[attr-defined]
    return changed == 1


def _restore_stock(session: Session, reservations: Sequence[Reservation]) -> None:
    """Put reserved quantities back, in product order (the order ``reserve`` locks rows in)."""
    returned: dict[int, int] = {}
    for reservation in reservations:
        for item in reservation.items:
            returned[item.product_id] = returned.get(item.product_id, 0) + item.quantity
    for product_id in sorted(returned):
        session.execute(
            update(Product).where(Product.id == product_id).values(stock=Product.stock + returned[product_id])
        )


def owned(session: Session, key: str, client_id: str) -> Reservation:
    """The reservation ``key`` of this client; another client's is as good as missing."""
    reservation = session.get(Reservation, key)
    if reservation is None or reservation.client_id != client_id:
        raise Problem(404, "reservation-not-found", f"No reservation {key!r}.")
    return reservation


def release(session: Session, *, key: str, client_id: str) -> Reservation:
    """Give held stock back; idempotent.

    An unknown key is recorded as released, so a late reservation under it holds nothing.
    """
    if session.get(Reservation, key) is None:
        session.add(Reservation(key=key, client_id=client_id, status=RELEASED, expires_at=utcnow()))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
    reservation = owned(session, key, client_id)
    if _transition(session, key, RELEASED):
        _restore_stock(session, [reservation])
        RESERVATIONS.labels("released").inc()
    session.commit()
    session.refresh(reservation)
    if reservation.status == COMMITTED:
        raise Problem(409, "reservation-committed", f"Reservation {key!r} is already committed.")
    return reservation


def commit(session: Session, *, key: str, client_id: str) -> Reservation:
    """Make held stock permanently taken; idempotent. An expired reservation cannot be committed."""
    now = utcnow()
    committed = session.execute(
        update(Reservation)
        .where(
            Reservation.key == key,
            Reservation.client_id == client_id,
            Reservation.status == HELD,
            Reservation.expires_at > now,
        )
        .values(status=COMMITTED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if committed.rowcount == 1:  # type: ignore[attr-defined]
        RESERVATIONS.labels("committed").inc()
    session.commit()
    reservation = owned(session, key, client_id)
    if reservation.status != COMMITTED:
        # Released or expired, possibly a moment ago by a concurrent release or expiry.
        raise Problem(409, "reservation-released", f"Reservation {key!r} was released or expired.")
    return reservation


def release_expired(session: Session, limit: int = EXPIRY_BATCH) -> int:
    """Release held reservations whose time ran out (their holder never committed)."""
    keys = session.scalars(
        select(Reservation.key)
        .where(Reservation.status == HELD, Reservation.expires_at < utcnow())
        .order_by(Reservation.key)
        .limit(limit)
    ).all()
    expired = [
        reservation
        for key in keys
        if (reservation := session.get(Reservation, key)) is not None and _transition(session, key, RELEASED)
    ]
    _restore_stock(session, expired)
    session.commit()
    if expired:
        RESERVATIONS.labels("expired").inc(len(expired))
    return len(expired)
