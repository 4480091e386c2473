"""Stock reservations: all-or-nothing, idempotent by key, never driving stock negative."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
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
from flotilla_kit.db import utcnow
from flotilla_kit.problems import Problem

EXPIRY_BATCH = 100


def _lines(items: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((int(item["product_id"]), int(item["quantity"])) for item in items)


def _same_request(reservation: Reservation, items: Sequence[dict[str, Any]]) -> bool:
    held = sorted((item.product_id, item.quantity) for item in reservation.items)
    return (reservation.status == RELEASED and not reservation.items) or held == _lines(items)


def reserve(
    session: Session, *, key: str, client_id: str, items: Sequence[dict[str, Any]], ttl_seconds: int
) -> tuple[Reservation, bool]:
    """Hold stock for every line or for none; returns the reservation and whether it is new."""
    existing = session.get(Reservation, key)
    if existing is not None:
        return _replay(existing, client_id, items), False
    release_expired(session)
    reservation = Reservation(
        key=key,
        client_id=client_id,
        status=HELD,
        expires_at=utcnow() + timedelta(seconds=ttl_seconds),
        items=[],  # filled below, without a query to load it
    )
    session.add(reservation)
    try:
        session.flush()
    except IntegrityError:
        # The same key was reserved concurrently; answer as a replay of it.
        session.rollback()
        return _replay(session.get(Reservation, key), client_id, items), False  # type: ignore[arg-type]
    # Lines in product order, so concurrent reservations lock rows in the same order.
    for product_id, quantity in _lines(items):
        taken = session.execute(
            update(Product)
            .where(Product.id == product_id, Product.deleted_at.is_(None), Product.stock >= quantity)
            .values(stock=Product.stock - quantity)
            .returning(Product.name, Product.price_cents, Product.currency)
        ).one_or_none()
        if taken is None:
            problem = _shortage(session, product_id, quantity)
            session.rollback()
            RESERVATIONS.labels("insufficient_stock" if problem.status == 409 else "unknown_product").inc()
            raise problem
        # Through the relationship: the answer needs no reload after the commit.
        reservation.items.append(
            ReservationItem(
                reservation_key=key,
                product_id=product_id,
                quantity=quantity,
                name=taken.name,
                unit_price_cents=taken.price_cents,
                currency=taken.currency,
            )
        )
    session.commit()
    RESERVATIONS.labels("reserved").inc()
    return reservation, True


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
    """Make held stock permanently taken; idempotent."""
    reservation = owned(session, key, client_id)
    if _transition(session, key, COMMITTED):
        RESERVATIONS.labels("committed").inc()
    session.commit()
    session.refresh(reservation)
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
